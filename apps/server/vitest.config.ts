import { pagodaProject } from '@pagoda/vitest-config';

export default pagodaProject();
