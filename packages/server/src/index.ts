export { ApiError, errorBody } from './http-error';
export type { ErrorBody } from './http-error';
export { Counter, Gauge, Histogram, prometheusContentType, Registry } from './metrics';
export { PagodaMetrics } from './pagoda-metrics';
export { createPagodaServer } from './server';
export type { PagodaServer, PagodaServerOptions, ServedEngine } from './server';
