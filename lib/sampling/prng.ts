/**
 * A small seeded PRNG for reproducible sampling: sfc32 (Chris Doty-Humphrey's "small fast counting"
 * generator, 128 bits of state), seeded through splitmix32 so that nearby seeds give unrelated streams.
 * Same seed, same sequence, on every platform (only 32-bit integer arithmetic).
 */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** Any finite number; its integer part is used (negative and > 2^32 seeds are folded, not rejected). */
  constructor(seed: number) {
    let s = foldSeed(seed);
    const next = (): number => {
      // splitmix32
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.nextUint32(); // let the counter mix in
  }

  /** @internal The 128-bit state, for handing the stream to the native sampler and back. */
  getState(): Uint32Array {
    return Uint32Array.of(this.a, this.b, this.c, this.d);
  }

  /** @internal Continues from a state getState() (or the native sampler) returned. */
  setState(state: ArrayLike<number>): void {
    this.a = state[0] | 0;
    this.b = state[1] | 0;
    this.c = state[2] | 0;
    this.d = state[3] | 0;
  }

  /** Uniform integer in [0, 2^32). */
  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

/** Folds a seed (any finite number, integer part) into 32 bits, keeping the high bits of large seeds. */
function foldSeed(seed: number): number {
  const x = Math.trunc(seed);
  const lo = x % 4294967296;
  const hi = Math.floor(x / 4294967296) % 4294967296;
  return ((lo >>> 0) ^ Math.imul(hi >>> 0, 0x27d4eb2d)) >>> 0;
}

/** A seed for callers that did not give one. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 4294967296);
}
