// Lints the files at the top of the repository and in tooling/ that belong to no package with its own config.
import config from '@pagoda/eslint-config';

export default [...config, { ignores: ['packages/**', 'apps/**'] }];
