export { ApiError, describeSchemaErrors, errorBody } from './http-error';
export type { ErrorBody } from './http-error';
export { PagodaMetrics } from './pagoda-metrics';
export { ChatCompletionRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest } from './schemas';
export { createPagodaServer } from './server';
export type { PagodaServer, PagodaServerOptions, ServedEngine } from './server';
