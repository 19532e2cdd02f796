// Lints the files at the top of the repository and in tooling/ that belong to no package with its own config.
import config from '@pagoda/eslint-config';

// The GPU check's bundle and carry folders are build outputs (ignored by git too).
export default [...config, { ignores: ['packages/**', 'apps/**', '.gpu-check/**', '.gpu-cuda-*/**', '.gpu/**'] }];
