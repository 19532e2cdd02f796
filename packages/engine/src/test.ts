// `@pagoda/engine/test`: oracles other packages' tests share (the server's client tests check outputs with them).
export { isJsonPrefix, satisfiesSchema } from './structured-output/test-json';
