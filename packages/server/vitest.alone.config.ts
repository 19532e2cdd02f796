import { pagodaAloneProject } from '@pagoda/vitest-config';

export default pagodaAloneProject();
