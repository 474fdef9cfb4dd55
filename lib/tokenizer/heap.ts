/**
 * The work queue of the SPM and BPE merge loops: candidate pairs of adjacent
 * symbols, popped by the smallest (key, left) — key is a BPE rank, or a
 * negated SentencePiece score, and ties go to the leftmost pair.
 *
 * A binary heap over parallel typed arrays (no object per pair): a text of n
 * symbols pushes O(n) pairs, so merging costs O(n log n).
 */
export class PairHeap {
  private key: Float64Array;
  private left: Int32Array;
  private right: Int32Array;
  private size: Int32Array;
  private n = 0;

  /** Fields of the pair the last successful pop() returned. */
  topKey = 0;
  topLeft = 0;
  topRight = 0;
  topSize = 0;

  constructor(capacity = 16) {
    const c = Math.max(4, capacity);
    this.key = new Float64Array(c);
    this.left = new Int32Array(c);
    this.right = new Int32Array(c);
    this.size = new Int32Array(c);
  }

  get length(): number {
    return this.n;
  }

  private grow(): void {
    const c = this.key.length * 2;
    const k = new Float64Array(c);
    k.set(this.key);
    this.key = k;
    const l = new Int32Array(c);
    l.set(this.left);
    this.left = l;
    const r = new Int32Array(c);
    r.set(this.right);
    this.right = r;
    const s = new Int32Array(c);
    s.set(this.size);
    this.size = s;
  }

  push(key: number, left: number, right: number, size: number): void {
    if (this.n === this.key.length) this.grow();
    const K = this.key;
    const L = this.left;
    const R = this.right;
    const S = this.size;
    let i = this.n++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (K[p] < key || (K[p] === key && L[p] <= left)) break;
      K[i] = K[p];
      L[i] = L[p];
      R[i] = R[p];
      S[i] = S[p];
      i = p;
    }
    K[i] = key;
    L[i] = left;
    R[i] = right;
    S[i] = size;
  }

  /** Removes the smallest pair into top*; false when empty. */
  pop(): boolean {
    if (this.n === 0) return false;
    const K = this.key;
    const L = this.left;
    const R = this.right;
    const S = this.size;
    this.topKey = K[0];
    this.topLeft = L[0];
    this.topRight = R[0];
    this.topSize = S[0];
    const m = --this.n;
    if (m === 0) return true;
    const key = K[m];
    const left = L[m];
    const right = R[m];
    const size = S[m];
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= m) break;
      const d = c + 1;
      if (d < m && (K[d] < K[c] || (K[d] === K[c] && L[d] < L[c]))) c = d;
      if (key < K[c] || (key === K[c] && left <= L[c])) break;
      K[i] = K[c];
      L[i] = L[c];
      R[i] = R[c];
      S[i] = S[c];
      i = c;
    }
    K[i] = key;
    L[i] = left;
    R[i] = right;
    S[i] = size;
    return true;
  }
}

/**
 * The merge loop both BPE flavours share: symbols form a linked list (prev/next, len in UTF-16
 * units, 0 once merged away); the heap holds candidate pairs, best first. Pops the best pair,
 * skips it if either side changed since it was queued, merges right into left, and lets tryAdd
 * queue the two new neighbouring pairs.
 */
export function mergeBestPairs(
  heap: PairHeap,
  len: Int32Array,
  prev: Int32Array,
  next: Int32Array,
  tryAdd: (left: number, right: number) => void,
): void {
  while (heap.pop()) {
    const left = heap.topLeft;
    const right = heap.topRight;
    if (len[left] === 0 || len[right] === 0 || len[left] + len[right] !== heap.topSize) continue;
    len[left] += len[right];
    len[right] = 0;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    tryAdd(prev[left], left);
    tryAdd(left, next[left]);
  }
}
