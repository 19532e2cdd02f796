export { logSoftmax, logSumExpOf, softmax } from './softmax';
