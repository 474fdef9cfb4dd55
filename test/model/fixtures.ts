/** Fixture access for the model and session tests. */
import { fixturePath } from '../helpers/fixtures';

export { fixturesDir } from '../helpers/fixtures';

export const stories260K = (): string => fixturePath('stories260K/stories260K.gguf');
