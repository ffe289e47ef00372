/**
 * Types of the loaded configuration derived from the schema, so that a key added to a section's
 * schema is in its type at once. At load (schema.ts) every value the file left out is made explicit
 * and the whole object is deep-frozen; `Loaded` says the same in types. Where the load reshapes a
 * value (an upstream's URL split into host, port and credentials), the section writes its type by
 * hand and `Carries` makes the compiler hold that type to the schema.
 */
import type { z } from 'zod';

/** Deeply read-only: the loaded configuration is frozen (`deepFreeze` in schema.ts). */
export type Frozen<T> = T extends readonly (infer E)[] ? readonly Frozen<E>[] : T extends object ? { readonly [K in keyof T]: Frozen<T[K]> } : T;

/** Every optional key present, absent values as null: `password?: string` becomes `password: string | null`. */
export type Explicit<T> = T extends undefined
  ? null
  : T extends readonly (infer E)[]
    ? Explicit<E>[]
    : T extends object
      ? { [K in keyof T]-?: Explicit<T[K]> }
      : T;

/**
 * The loaded form of schema `S`: its output, absent values as null, frozen. `Changes` gives the type
 * of the keys the load sets otherwise (a path resolved to a default, a key the file does not have).
 */
export type Loaded<S extends z.ZodType, Changes extends object = Record<never, never>> = [keyof Changes] extends [never]
  ? Frozen<Explicit<z.output<S>>>
  : Frozen<Omit<Explicit<z.output<S>>, keyof Changes> & Changes>;

/** `Expect<Carries<...>>` does not compile unless the check is true. */
export type Expect<T extends true> = T;

/**
 * True when the hand-written loaded type `L` has every key of the schema's output `P` but the
 * `Reshaped` ones, each of a type the parsed value (absent = null) fits: a key added to the schema
 * but not to `L`, or a value type changed on one side only, makes it false.
 */
export type Carries<L, P, Reshaped extends keyof P = never> = [Exclude<keyof P, Reshaped | keyof L>] extends [never]
  ? Explicit<Omit<P, Reshaped>> extends Pick<L, Extract<Exclude<keyof P, Reshaped>, keyof L>>
    ? true
    : false
  : false;

/** True when `A` and `B` are the same set (of keys, of literals). */
export type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
