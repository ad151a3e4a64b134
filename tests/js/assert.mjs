// Assertions that read the same in Node and in a page (node:assert exists only in Node).

export class AssertionError extends Error {}

const show = (v) => {
  try {
    return JSON.stringify(v, (_, x) => (x === undefined ? "<undefined>" : x));
  } catch {
    return String(v);
  }
};

export function ok(value, message = "expected a truthy value") {
  if (!value) throw new AssertionError(`${message} (got ${show(value)})`);
}

export function equal(actual, expected, message = "") {
  if (!Object.is(actual, expected)) throw new AssertionError(`${message} expected ${show(expected)}, got ${show(actual)}`);
}

function same(a, b) {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).filter((k) => a[k] !== undefined);
  const kb = Object.keys(b).filter((k) => b[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && same(a[k], b[k]));
}

/** Structural equality; a member holding undefined counts as absent. */
export function deepEqual(actual, expected, message = "") {
  if (!same(actual, expected)) throw new AssertionError(`${message}\n  expected ${show(expected)}\n  got      ${show(actual)}`);
}

export function match(text, pattern, message = "") {
  if (!pattern.test(text)) throw new AssertionError(`${message} ${show(text)} does not match ${pattern}`);
}

/** Await `promise` (or call `fn`), expect it to reject with an instance of `kind`; the error. */
export async function rejects(promiseOrFn, kind, message = "") {
  try {
    await (typeof promiseOrFn === "function" ? promiseOrFn() : promiseOrFn);
  } catch (err) {
    if (!(err instanceof kind)) throw new AssertionError(`${message} expected ${kind.name}, got ${err?.name}: ${err?.message}`);
    return err;
  }
  throw new AssertionError(`${message} expected ${kind.name}, but nothing was thrown`);
}
