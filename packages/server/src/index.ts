export { errorBody } from './http-error';
export type { ErrorBody } from './http-error';
export { createPagodaServer } from './server';
export type { PagodaServer, PagodaServerOptions } from './server';
