// The worker entry of a tensor- or pipeline-parallel rank: @pagoda/parallel's executor starts one per rank and hands
// it its rank, its communicator and the RankWorkerData; the runner loads this rank's shard of the model.
import { serveExecutorWorker } from '@pagoda/parallel';
import type { ModelRunnerOutput, ModelRunnerRequest } from '../model-step';
import { RankModelRunner } from './rank-runner';
import type { RankWorkerData } from './rank-runner';

serveExecutorWorker<readonly ModelRunnerRequest[], ModelRunnerOutput | undefined, RankWorkerData>((context) =>
  RankModelRunner.load(context),
);
