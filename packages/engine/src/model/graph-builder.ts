import onnxProto from 'onnx-proto';
import { CheckpointError } from '../errors';
import type { ModelWeights } from './safetensors';

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

/**
 * Collects nodes, inputs, outputs and initializers. Large initializers (weights, KV pools) become in-memory external
 * data, never protobuf bytes, so a model may exceed protobuf's 2 GB.
 */
export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly externalData: { path: string; data: Uint8Array }[] = [];
  private readonly initializerNames = new Set<string>();
  private usesMicrosoftDomain = false;

  constructor(private readonly weights: ModelWeights) {}

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

  /** The checkpoint weight `name` (float32) as an initializer over the weight's own memory. */
  weight(name: string): string {
    if (this.initializerNames.has(name)) return name;
    const tensor = this.weights.get(name);
    if (tensor === undefined) {
      throw new CheckpointError('checkpoint_tensor_missing', '(weights in memory)', 'is missing', { tensor: name });
    }
    return this.tensor(name, DataType.FLOAT, tensor.shape, new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
  }

  /** The float32 checkpoint weight `name`, or throws the missing-tensor error. */
  weightData(name: string): { shape: readonly number[]; data: Float32Array } {
    const tensor = this.weights.get(name);
    if (tensor === undefined) {
      throw new CheckpointError('checkpoint_tensor_missing', '(weights in memory)', 'is missing', { tensor: name });
    }
    return tensor;
  }

  /**
   * An initializer whose bytes ONNX Runtime takes from memory. On the CPU it may keep pointing into `data` rather
   * than copy it, so `data` must live as long as the session.
   */
  tensor(name: string, dataType: number, dims: readonly number[], data: Uint8Array): string {
    const path = `tensor${this.externalData.length}`;
    this.externalData.push({ path, data });
    this.initializers.push(
      onnx.TensorProto.create({
        name,
        dataType,
        dims: [...dims],
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: path },
          { key: 'offset', value: '0' },
          { key: 'length', value: String(data.byteLength) },
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

  private inlineConstant(name: string, dataType: number, dims: number[], rawData: Uint8Array): string {
    if (this.initializerNames.has(name)) return name;
    this.initializers.push(onnx.TensorProto.create({ name, dataType, dims, rawData }));
    this.initializerNames.add(name);
    return name;
  }

  /**
   * The body of a control-flow node (`If`'s branches): `build` adds nodes to the builder it is given, reading any
   * value of this graph, and returns the names of the subgraph's outputs. Constants it makes move to this graph,
   * since a subgraph may not define a name its enclosing graph has; weights cannot be made there.
   */
  subgraph(name: string, build: (graph: GraphBuilder) => readonly { name: string; elemType: number }[]): onnxProto.onnx.IGraphProto {
    const branch = new GraphBuilder(this.weights);
    const outputs = build(branch);
    if (branch.externalData.length > 0 || branch.inputs.length > 0) {
      throw new Error(`subgraph ${name} may only add nodes and constants`);
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

  finish(producerName = '@pagoda/engine'): { model: Uint8Array; externalData: { path: string; data: Uint8Array }[] } {
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
    return { model: onnx.ModelProto.encode(model).finish(), externalData: this.externalData };
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
