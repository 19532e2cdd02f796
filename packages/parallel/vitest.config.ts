import { pagodaProject } from '@pagoda/vitest-config';

// The global setup bundles the entries that worker threads and child processes load (see test-global-setup.ts).
export default pagodaProject({ test: { globalSetup: ['./src/test-global-setup.ts'] } });
