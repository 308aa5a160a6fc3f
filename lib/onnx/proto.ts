// Reading and writing ONNX protobufs with onnx-buf (the ONNX 1.20 schema for @bufbuild/protobuf),
// which keeps every field we do not touch (node metadata_props, functions, opset imports), plus
// the few builders the rewriters need.
import * as fs from 'node:fs';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  GraphProto,
  ModelProto,
  ModelProtoSchema,
  NodeProto,
  NodeProtoSchema,
  TensorProto,
  TensorProtoSchema,
  ValueInfoProto,
  ValueInfoProtoSchema,
  TypeProtoSchema,
  TypeProto_TensorSchema,
  TensorShapeProtoSchema,
  TensorShapeProto_DimensionSchema,
  AttributeProto,
  AttributeProtoSchema,
  AttributeProto_AttributeType,
  StringStringEntryProtoSchema,
} from 'onnx-buf';

export type { GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto, AttributeProto };

/** TensorProto.DataType codes we meet. */
export const ONNX_FLOAT = 1;
export const ONNX_UINT8 = 2;
export const ONNX_INT32 = 6;
export const ONNX_INT64 = 7;
export const ONNX_FLOAT16 = 10;
export const ONNX_BFLOAT16 = 16;

export function readModel(file: string): ModelProto {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (err) {
    throw new Error(`Could not read the ONNX model ${file}: ${(err as Error).message}`);
  }
  try {
    return fromBinary(ModelProtoSchema, bytes);
  } catch (err) {
    throw new Error(`${file} is not a valid ONNX model (protobuf decoding failed: ${(err as Error).message})`);
  }
}

export function encodeModel(model: ModelProto): Uint8Array {
  return toBinary(ModelProtoSchema, model);
}

export function cloneModel(model: ModelProto): ModelProto {
  return fromBinary(ModelProtoSchema, toBinary(ModelProtoSchema, model));
}

/** A dimension: a number is fixed, a string is symbolic. */
export type Dim = number | string;

export function tensorValueInfo(name: string, elemType: number, dims: Dim[]): ValueInfoProto {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: 'tensorType',
        value: create(TypeProto_TensorSchema, {
          elemType,
          shape: create(TensorShapeProtoSchema, {
            dim: dims.map((d) =>
              create(TensorShapeProto_DimensionSchema, {
                value: typeof d === 'number' ? { case: 'dimValue', value: BigInt(d) } : { case: 'dimParam', value: d },
              }),
            ),
          }),
        }),
      },
    }),
  });
}

/** Dims of a graph input/output: numbers, symbols, or null when unknown. */
export function valueInfoDims(vi: ValueInfoProto): (Dim | null)[] | null {
  if (vi.type?.value.case !== 'tensorType') return null;
  const shape = vi.type.value.value.shape;
  if (!shape) return null;
  return shape.dim.map((d) =>
    d.value.case === 'dimValue' ? Number(d.value.value) : d.value.case === 'dimParam' ? d.value.value : null,
  );
}

/** Each value's producing node, by name. */
export function producerMap(graph: GraphProto): Map<string, NodeProto> {
  const m = new Map<string, NodeProto>();
  for (const n of graph.node) for (const o of n.output) m.set(o, n);
  return m;
}

export function valueInfoElemType(vi: ValueInfoProto): number {
  return vi.type?.value.case === 'tensorType' ? vi.type.value.value.elemType : 0;
}

export function node(
  opType: string, inputs: string[], outputs: string[], name: string,
  attrs: Record<string, number | number[]> = {},
): NodeProto {
  return create(NodeProtoSchema, {
    opType,
    input: inputs,
    output: outputs,
    name,
    attribute: Object.entries(attrs).map(([key, v]) =>
      Array.isArray(v)
        ? create(AttributeProtoSchema, { name: key, type: AttributeProto_AttributeType.INTS, ints: v.map(BigInt) })
        : create(AttributeProtoSchema, { name: key, type: AttributeProto_AttributeType.INT, i: BigInt(v) }),
    ),
  });
}

export function int64Tensor(name: string, values: number[]): TensorProto {
  const raw = new BigInt64Array(values.map(BigInt));
  return create(TensorProtoSchema, {
    name,
    dims: [BigInt(values.length)],
    dataType: ONNX_INT64,
    rawData: new Uint8Array(raw.buffer),
  });
}

/** A float32 initializer (row-major data of `dims`). */
export function floatTensor(name: string, dims: number[], values: Float32Array<ArrayBuffer>): TensorProto {
  return create(TensorProtoSchema, {
    name,
    dims: dims.map(BigInt),
    dataType: ONNX_FLOAT,
    rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  });
}

export function intAttr(n: NodeProto, name: string, fallback: number): number {
  const a = n.attribute.find((x) => x.name === name);
  return a ? Number(a.i) : fallback;
}

export function metadataEntry(key: string, value: string) {
  return create(StringStringEntryProtoSchema, { key, value });
}

export { create, TensorProtoSchema };
