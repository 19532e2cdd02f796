import onnxProto from 'onnx-proto';
import { CheckpointError } from '../errors';
import { toHalfPrecision } from './half';
import { blocksPerRow, bytesPerBlock, formatBits, quantizationBlockSize, type QuantizedBlocks, type QuantizedFormat } from './quantization';
import { WeightFile, type WeightFileEntry } from './weight-file';
import { concatWeights, type ModelWeights, type WeightTensor } from './weight-tensor';

const { onnx } = onnxProto;
export const DataType = onnx.TensorProto.DataType;
const AttributeType = onnx.AttributeProto.AttributeType;

/** ONNX Runtime 1.30 refuses the IR version onnx 1.23 writes by default (14); 10 carries everything used here. */
const irVersion = 10;
/** Opset 23 brings `Attention` (with GQA), `RMSNormalization` and `RotaryEmbedding`. */
const opsetVersion = 23;
/** ONNX Runtime's contrib operators (`PagedAttention`, `SkipSimplifiedLayerNormalization`). */
export const microsoftDomain = 'com.microsoft';

export type AttributeValue = number | number[] | { float: number } | { string: string } | { graph: onnxProto.onnx.IGraphProto };

/** The float types a graph computes in: float32 on the CPU, float16 or bfloat16 on a GPU. */
export type FloatElementType = 'float32' | 'float16' | 'bfloat16';

/** ONNX's element type of each float type. */
export const floatDataType: Readonly<Record<FloatElementType, number>> = {
  float32: DataType.FLOAT,
  float16: DataType.FLOAT16,
  bfloat16: DataType.BFLOAT16,
};

/** A weight's quantized blocks as MatMulNBits initializers, and what its attributes need. */
export interface QuantizedInitializers {
  /** `[rows, blocks, 32 · bits / 8]` uint8 codes. */
  readonly codes: string;
  /** `[rows, blocks]` scales. */
  readonly scales: string;
  readonly format: QuantizedFormat;
  readonly rows: number;
  readonly columns: number;
}

/** Where a `[rows, columns]` weight's bytes lie in the weight file (GraphBuilder.placeRows). */
export type PlacedRows =
  | { readonly format: 'float32'; readonly rows: number; readonly columns: number; readonly values: WeightFileEntry }
  | { readonly format: QuantizedFormat; readonly rows: number; readonly columns: number; readonly codes: WeightFileEntry; readonly scales: WeightFileEntry };

/**
 * Collects nodes, inputs, outputs and initializers. Initializers are external data in a {@link WeightFile} (placed
 * now, written when the session starts), never protobuf bytes, so a model may exceed protobuf's 2 GB and its weights
 * are never in memory twice.
 */
export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly initializerNames = new Set<string>();
  /** Weights made from the model's for this graph (packed q/k/v and gate/up), by name. */
  private readonly derivedWeights = new Map<string, WeightTensor>();
  private usesMicrosoftDomain = false;

  /**
   * @param weights the model's weights, read only when the weight file is written
   * @param weightFile where initializers go; share one between graphs of the same weights
   */
  constructor(
    private readonly weights: ModelWeights,
    readonly weightFile: WeightFile = new WeightFile(),
  ) {}

  input(name: string, elemType: number, dims: (number | string)[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: number, dims: (number | string)[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  node(opType: string, inputs: string[], output: string, attributes: Record<string, AttributeValue> = {}, domain = ''): string {
    return this.nodeOutputs(opType, inputs, [output], attributes, domain)[0]!;
  }

  /** A node with several outputs; an empty name leaves an optional output out. */
  nodeOutputs(
    opType: string,
    inputs: string[],
    outputs: string[],
    attributes: Record<string, AttributeValue> = {},
    domain = '',
  ): string[] {
    if (domain === microsoftDomain) this.usesMicrosoftDomain = true;
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        domain,
        input: inputs,
        output: outputs,
        name: `${outputs.find((output) => output !== '')}.node`,
        attribute: Object.entries(attributes).map(([name, value]) => attribute(name, value)),
      }),
    );
    return outputs;
  }

  has(name: string): boolean {
    return this.initializerNames.has(name);
  }

  /** Whether the model (or this graph, see deriveWeight) has the weight `name`. */
  hasWeight(name: string): boolean {
    return this.derivedWeights.has(name) || this.weights.has(name);
  }

  /** A weight made from the model's for this graph, under its own name (read, like any, when written). */
  deriveWeight(name: string, tensor: WeightTensor): void {
    this.derivedWeights.set(name, tensor);
  }

  /** The weight `name`, or throws the missing-tensor error. */
  weightTensor(name: string): WeightTensor {
    const tensor = this.derivedWeights.get(name) ?? this.weights.get(name);
    if (tensor === undefined) {
      throw new CheckpointError('checkpoint_tensor_missing', '(weights in memory)', 'is missing', { tensor: name });
    }
    return tensor;
  }

  /**
   * The float weight `name` as an initializer of `elementType` (converted from float32 when the weight file is
   * written, rounding to nearest even).
   */
  weight(name: string, elementType: FloatElementType = 'float32'): string {
    if (this.initializerNames.has(name)) return name;
    const { shape, entry } = this.placeFloat(name, elementType);
    return this.declare(name, floatDataType[elementType], shape, entry);
  }

  /**
   * The float weight `name` as initializers over consecutive row ranges of its bytes in the weight file, each of at
   * most `maxBytes` (`${name}.chunk0`, …), or as {@link weight} alone when it fits: see {@link linearNode}'s
   * large-weight split.
   */
  weightRowChunks(name: string, maxBytes: number, elementType: FloatElementType = 'float32'): string[] {
    const { shape, entry } = this.placeFloat(name, elementType);
    const [rows, ...rest] = shape as [number, ...number[]];
    const rowBytes = entry.byteLength / rows;
    // Chunks start on 64 KiB boundaries of the file (the entry's own alignment), which every platform maps.
    const rowsPerAlignment = 2 ** 16 / gcd(rowBytes, 2 ** 16);
    const chunkRows = Math.max(rowsPerAlignment, Math.floor(maxBytes / rowBytes / rowsPerAlignment) * rowsPerAlignment);
    if (chunkRows >= rows) return [this.weight(name, elementType)];
    const chunks: string[] = [];
    for (let start = 0; start < rows; start += chunkRows) {
      const count = Math.min(chunkRows, rows - start);
      const chunk = { key: entry.key, offset: entry.offset + start * rowBytes, byteLength: count * rowBytes };
      chunks.push(this.declareOnce(`${name}.chunk${chunks.length}`, floatDataType[elementType], [count, ...rest], chunk));
    }
    return chunks;
  }

  /**
   * Places the weight `name` in the weight file without declaring an initializer, and says where its bytes lie:
   * float32 rows, or quantized codes and float32 scales (the same entries a tied head's initializers read). The CPU
   * runners read the embedding's rows from the file themselves (see EmbeddingTable), so no session maps it.
   */
  placeRows(name: string): PlacedRows {
    const tensor = this.weightTensor(name);
    const [rows, columns] = tensor.shape as [number, number];
    if (tensor.format === 'float32') return { format: 'float32', rows, columns, values: this.placeFloat(name, 'float32').entry };
    const { codes, scalesEntry } = this.placeQuantized(name, 'float32');
    return { format: tensor.format, rows, columns, codes, scales: scalesEntry };
  }

  private placeFloat(name: string, elementType: FloatElementType): { shape: readonly number[]; entry: WeightFileEntry } {
    const tensor = this.weightTensor(name);
    if (tensor.format !== 'float32') throw new TypeError(`weight ${name} is ${tensor.format}; the graph reads it as a float here`);
    const elements = tensor.shape.reduce((product, dim) => product * dim, 1);
    const entry = this.weightFile.place(name, elements * (elementType === 'float32' ? 4 : 2), async () => {
      const values = await tensor.read();
      return elementType === 'float32' ? bytesOf(values) : bytesOf(toHalfPrecision(values, elementType));
    });
    return { shape: tensor.shape, entry };
  }

  /**
   * The quantized weight `name` as MatMulNBits' initializers: codes `[rows, blocks, 32 · bits / 8]` and scales
   * `[rows, blocks]` (in `scaleType`: the scales are float16 values already, so float16 keeps them exactly).
   */
  quantizedWeight(name: string, scaleType: FloatElementType = 'float32'): QuantizedInitializers {
    const placed = this.placeQuantized(name, scaleType);
    const codes = this.declareOnce(`${name}.codes`, DataType.UINT8, [placed.rows, placed.blocks, bytesPerBlock(placed.format)], placed.codes);
    const scales = this.declareOnce(`${name}.scales`, floatDataType[scaleType], [placed.rows, placed.blocks], placed.scalesEntry);
    return { codes, scales, format: placed.format, rows: placed.rows, columns: placed.columns };
  }

  /**
   * The quantized embedding `name` as GatherBlockQuantized's initializers, over the very codes a tied head's
   * MatMulNBits reads (`${name}.codes` [rows, blocks, 32 · bits / 8], quantize_axis 2) and its scales as
   * `${name}.scales.blocks` [rows, blocks, 1]: on a GPU, one copy of the codes.
   */
  quantizedEmbedding(name: string, scaleType: FloatElementType): QuantizedInitializers & { readonly quantizeAxis: number } {
    const placed = this.placeQuantized(name, scaleType);
    const blockBytes = bytesPerBlock(placed.format);
    const codes = this.declareOnce(`${name}.codes`, DataType.UINT8, [placed.rows, placed.blocks, blockBytes], placed.codes);
    const scales = this.declareOnce(`${name}.scales.blocks`, floatDataType[scaleType], [placed.rows, placed.blocks, 1], placed.scalesEntry);
    return { codes, scales, format: placed.format, rows: placed.rows, columns: placed.columns, quantizeAxis: 2 };
  }

  /**
   * Places a quantized weight's codes and scales in the weight file. Both come from one read
   * of the weight, made when the codes are written and dropped once the scales are.
   */
  private placeQuantized(name: string, scaleType: FloatElementType) {
    const tensor = this.weightTensor(name);
    if (tensor.format === 'float32') throw new TypeError(`weight ${name} is float32; a quantized weight is needed here`);
    const [rows, columns] = tensor.shape;
    const blocks = blocksPerRow(columns);
    let pending: Promise<QuantizedBlocks> | undefined;
    const read = (): Promise<QuantizedBlocks> => (pending ??= tensor.read());
    const codes = this.weightFile.place(`${name}.codes`, rows * blocks * bytesPerBlock(tensor.format), async () => (await read()).codes);
    const scalesEntry = this.weightFile.place(`${name}.scales`, rows * blocks * (scaleType === 'float32' ? 4 : 2), async () => {
      const values = (await read()).scales;
      pending = undefined;
      return scaleType === 'float32' ? bytesOf(values) : bytesOf(toHalfPrecision(values, scaleType));
    });
    return { format: tensor.format, rows, columns, blocks, codes, scalesEntry };
  }

  private declareOnce(name: string, dataType: number, dims: readonly number[], entry: WeightFileEntry): string {
    return this.initializerNames.has(name) ? name : this.declare(name, dataType, dims, entry);
  }

  /** An initializer whose bytes are already in memory (constants, rotary caches); they are kept until written. */
  tensor(name: string, dataType: number, dims: readonly number[], data: Uint8Array): string {
    return this.lazyTensor(name, dataType, dims, data.byteLength, () => data);
  }

  /**
   * An all-zero initializer (a KV pool made on the device): a hole in the weight file, never held in memory. `key`
   * names its place in the file when graphs sharing the file have same-named zeros of other sizes.
   */
  zeroTensor(name: string, dataType: number, dims: readonly number[], byteLength: number, key = name): string {
    if (this.initializerNames.has(name)) return name;
    return this.declare(name, dataType, dims, this.weightFile.place(key, byteLength));
  }

  /** An initializer of `byteLength` bytes that `produce` makes when the weight file is written. */
  lazyTensor(
    name: string,
    dataType: number,
    dims: readonly number[],
    byteLength: number,
    produce: () => Uint8Array | Promise<Uint8Array>,
  ): string {
    if (this.initializerNames.has(name)) return name;
    return this.declare(name, dataType, dims, this.weightFile.place(name, byteLength, produce));
  }

  private declare(name: string, dataType: number, dims: readonly number[], entry: WeightFileEntry): string {
    this.initializers.push(
      onnx.TensorProto.create({
        name,
        dataType,
        dims: [...dims],
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: WeightFile.fileName },
          { key: 'offset', value: String(entry.offset) },
          { key: 'length', value: String(entry.byteLength) },
        ],
      }),
    );
    this.initializerNames.add(name);
    return name;
  }

  int64Constant(name: string, values: number[], dims: number[] = [values.length]): string {
    const data = BigInt64Array.from(values.map(BigInt));
    return this.inlineConstant(name, DataType.INT64, dims, new Uint8Array(data.buffer));
  }

  floatConstant(name: string, values: number[], dims: number[] = [values.length]): string {
    return this.inlineConstant(name, DataType.FLOAT, dims, new Uint8Array(Float32Array.from(values).buffer));
  }

  /** A small initializer stored in the model itself (protobuf bytes), not in the weight file. */
  inlineConstant(name: string, dataType: number, dims: number[], rawData: Uint8Array): string {
    if (this.initializerNames.has(name)) return name;
    this.initializers.push(onnx.TensorProto.create({ name, dataType, dims, rawData }));
    this.initializerNames.add(name);
    return name;
  }

  /**
   * The body of a control-flow node (`If`'s branches): `build` adds nodes to the builder it is given, reading any
   * value of this graph, and returns the names of the subgraph's outputs. Initializers it makes (constants, and
   * weights, placed in this graph's weight file) move to this graph, since a subgraph may not define a name its
   * enclosing graph has.
   */
  subgraph(name: string, build: (graph: GraphBuilder) => readonly { name: string; elemType: number }[]): onnxProto.onnx.IGraphProto {
    const branch = new GraphBuilder(this.weights, this.weightFile);
    const outputs = build(branch);
    if (branch.inputs.length > 0 || branch.outputs.length > 0) {
      throw new Error(`subgraph ${name} may only add nodes and initializers`);
    }
    for (const initializer of branch.initializers) {
      if (this.initializerNames.has(initializer.name!)) continue;
      this.initializers.push(initializer);
      this.initializerNames.add(initializer.name!);
    }
    this.usesMicrosoftDomain ||= branch.usesMicrosoftDomain;
    return onnx.GraphProto.create({
      name,
      node: branch.nodes,
      output: outputs.map((output) => onnx.ValueInfoProto.create({ name: output.name, type: { tensorType: { elemType: output.elemType } } })),
    });
  }

  /** The encoded model, whose initializers the weight file holds. */
  finish(producerName = '@pagoda/engine'): { model: Uint8Array; weights: WeightFile } {
    const model = onnx.ModelProto.create({
      irVersion,
      opsetImport: [
        { domain: '', version: opsetVersion },
        ...(this.usesMicrosoftDomain ? [{ domain: microsoftDomain, version: 1 }] : []),
      ],
      producerName,
      graph: {
        name: 'pagoda',
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
      },
    });
    return { model: onnx.ModelProto.encode(model).finish(), weights: this.weightFile };
  }
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]): onnxProto.onnx.IValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((dim) => (typeof dim === 'string' ? { dimParam: dim } : { dimValue: dim })) },
      },
    },
  });
}

function attribute(name: string, value: AttributeValue): onnxProto.onnx.IAttributeProto {
  if (typeof value === 'number') return { name, type: AttributeType.INT, i: value };
  if (Array.isArray(value)) return { name, type: AttributeType.INTS, ints: value };
  if ('string' in value) return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value.string) };
  if ('graph' in value) return { name, type: AttributeType.GRAPH, g: value.graph };
  return { name, type: AttributeType.FLOAT, f: value.float };
}

/** The bytes of a typed array, as a view. */
export function bytesOf(array: Float32Array | Uint16Array | Uint8Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/**
 * The largest float weight one Gemm holds (see linearNode): a larger one without a bias is split by rows. 64 MiB
 * bounds the start-up overlap and leaves each Gemm thousands of output columns.
 */
export const maxGemmWeightBytes = 64 * 2 ** 20;

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * `input · weightᵀ (+ bias)` for a Hugging Face `[out, in]` weight: `Gemm` with `transB` for a float weight,
 * `com.microsoft.MatMulNBits` for a quantized one (codes and scales as QuantizedInitializers lays them out, default
 * zero points, the bias as its input 5). `accuracyLevel` is MatMulNBits' own: 4 quantizes the activations to int8
 * per block, 1 computes in float32.
 */
export function linearNode(
  graph: GraphBuilder,
  input: string,
  weightName: string,
  output: string,
  options: {
    readonly bias?: string | undefined;
    readonly accuracyLevel: number;
    readonly elementType?: FloatElementType;
    /** The largest float weight one Gemm holds (default {@link maxGemmWeightBytes}). */
    readonly maxWeightBytes?: number;
  },
): string {
  const elementType = options.elementType ?? 'float32';
  const bias = options.bias === undefined ? undefined : graph.weight(options.bias, elementType);
  if (graph.weightTensor(weightName).format === 'float32') {
    if (bias !== undefined) return graph.node('Gemm', [input, graph.weight(weightName, elementType), bias], output, { transB: 1 });
    // One Gemm per row chunk of a weight over maxWeightBytes, outputs concatenated: ONNX Runtime prepacks a Gemm's
    // weight while its mapped pages are resident, so one Gemm over a large weight (a vocabulary head: 622 MB for
    // Qwen3-0.6B) briefly holds it twice; in chunks the overlap is one chunk.
    const chunks = graph.weightRowChunks(weightName, options.maxWeightBytes ?? maxGemmWeightBytes, elementType);
    if (chunks.length === 1) return graph.node('Gemm', [input, chunks[0]!], output, { transB: 1 });
    const parts = chunks.map((chunk, index) => graph.node('Gemm', [input, chunk], `${output}.chunk${index}`, { transB: 1 }));
    return graph.node('Concat', parts, output, { axis: -1 });
  }
  const quantized = graph.quantizedWeight(weightName, elementType);
  return graph.node(
    'MatMulNBits',
    [input, quantized.codes, quantized.scales, ...(bias === undefined ? [] : ['', '', bias])],
    output,
    {
      K: quantized.columns,
      N: quantized.rows,
      bits: formatBits[quantized.format],
      block_size: quantizationBlockSize,
      accuracy_level: options.accuracyLevel,
    },
    microsoftDomain,
  );
}

/**
 * One projection over several weights' output rows stacked (q/k/v, gate/up), `input · [W1; W2; …]ᵀ (+ biases)`:
 * one Gemm or MatMulNBits over a packed weight `${packedName}.weight` (read as the parts concatenated) when the
 * parts share a format, as they do unless a GGUF stores them at different types; otherwise one projection each and
 * their outputs concatenated, which computes the same. `parts` are weight names without `.weight`; with `biases`,
 * `${part}.bias` are added. Returns the `[tokens, Σ rows]` output; `onWeight` hears each weight name used.
 */
export function packedLinearNode(
  graph: GraphBuilder,
  input: string,
  packedName: string,
  parts: readonly string[],
  output: string,
  options: {
    readonly biases: boolean;
    readonly accuracyLevel: number;
    readonly elementType?: FloatElementType;
    readonly maxWeightBytes?: number;
    readonly onWeight?: (name: string) => void;
  },
): string {
  const use = (name: string | undefined): string | undefined => {
    if (name !== undefined) options.onWeight?.(name);
    return name;
  };
  const linear = (weight: string, out: string, bias: string | undefined): string =>
    linearNode(graph, input, use(weight)!, out, {
      bias: use(bias),
      accuracyLevel: options.accuracyLevel,
      ...(options.elementType === undefined ? {} : { elementType: options.elementType }),
      ...(options.maxWeightBytes === undefined ? {} : { maxWeightBytes: options.maxWeightBytes }),
    });
  const stack = (suffix: string): boolean => {
    const name = `${packedName}.${suffix}`;
    if (graph.hasWeight(name)) return true;
    const stacked = concatWeights(parts.map((part) => graph.weightTensor(`${part}.${suffix}`)));
    if (stacked !== undefined) graph.deriveWeight(name, stacked);
    return stacked !== undefined;
  };
  if (stack('weight') && (!options.biases || stack('bias'))) {
    return linear(`${packedName}.weight`, output, options.biases ? `${packedName}.bias` : undefined);
  }
  const outputs = parts.map((part, index) => linear(`${part}.weight`, `${output}.part${index}`, options.biases ? `${part}.bias` : undefined));
  return graph.node('Concat', outputs, output, { axis: -1 });
}

/**
 * The rows of the embedding `weightName` at `indices`, on a device (the CPU runners read rows themselves, see
 * EmbeddingTable): `Gather` for a float weight, `com.microsoft.GatherBlockQuantized` for a quantized one (probed on
 * ONNX Runtime 1.30: uint8 data of 4 or 8 bits in MatMulNBits' 3-D layout with scales `[vocab, blocks, 1]` and
 * quantize_axis 2; default zero points as MatMulNBits'). Both read the initializer a tied head reads, so a GPU holds
 * the bytes once.
 */
export function embeddingNode(
  graph: GraphBuilder,
  weightName: string,
  indices: string,
  output: string,
  options: { readonly elementType?: FloatElementType } = {},
): string {
  const elementType = options.elementType ?? 'float32';
  if (graph.weightTensor(weightName).format === 'float32') {
    return graph.node('Gather', [graph.weight(weightName, elementType), indices], output, { axis: 0 });
  }
  const quantized = graph.quantizedEmbedding(weightName, elementType);
  const gathered = graph.node(
    'GatherBlockQuantized',
    [quantized.codes, indices, quantized.scales],
    `${output}.blocks`,
    { gather_axis: 0, quantize_axis: quantized.quantizeAxis, block_size: quantizationBlockSize, bits: formatBits[quantized.format] },
    microsoftDomain,
  );
  // [tokens, blocks, 32] back to [tokens, hidden]: a view, no copy.
  return graph.node('Reshape', [gathered, graph.int64Constant(`${weightName}.rows_shape`, [0, quantized.columns])], output);
}
