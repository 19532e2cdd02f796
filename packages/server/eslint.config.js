import config from '@pagoda/eslint-config';

export default config;
