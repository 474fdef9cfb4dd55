/**
 * The clean-up llama.cpp's detokenizer applies for vocabularies with
 * clean_spaces (GPT-2-style BPE, WordPiece), after Hugging Face's
 * `clean_up_tokenization_spaces`. It is lossy (" ," becomes ","), so decode()
 * applies it only on request.
 */
export function cleanUpSpaces(text: string): string {
  if (text.length === 0) return text;

  // 1: " ?", " !", " .", " ," lose the space.
  const t1: string[] = [text[0]];
  for (let i = 1; i < text.length; i++) {
    const x = text[i];
    if (text[i - 1] === ' ' && (x === '?' || x === '!' || x === '.' || x === ',')) t1.pop();
    t1.push(x);
  }

  // 2: a lone apostrophe between spaces, " ' ", loses both spaces.
  const t2: string[] = [t1[0]];
  let prev = t1[0];
  for (let i = 1; i < t1.length; i++) {
    const x = t1[i];
    if (x === "'" && i + 1 < t1.length && prev === ' ' && t1[i + 1] === ' ') {
      t2.pop();
      t2.push(x);
      i++; // the following space goes too
      prev = '\0';
      continue;
    }
    t2.push(x);
    prev = x;
  }

  // 3: " 's", " 'm", " 're", " 've" lose the space (" 't", " 'd", " 'll" keep it, as in llama.cpp).
  const t3: string[] = [t2[0]];
  for (let i = 1; i < t2.length; i++) {
    const x = t2[i];
    if (t2[i - 1] === ' ' && x === "'" && i + 1 < t2.length) {
      const x1 = t2[i + 1];
      const x2 = i + 2 < t2.length ? t2[i + 2] : '';
      if (x1 === 's' || x1 === 'm' || (x1 === 'r' && x2 === 'e') || (x1 === 'v' && x2 === 'e')) t3.pop();
    }
    t3.push(x);
  }
  return t3.join('');
}
