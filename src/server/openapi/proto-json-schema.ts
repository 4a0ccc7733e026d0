// JSON Schemas (2020-12, as OpenAPI 3.1 uses) for the proto messages, derived
// from the generated descriptors so the OpenAPI document cannot drift from
// the proto: a field added to a message appears in the document by itself.
// The shapes are those of protobuf-es toJson with alwaysEmitImplicit, which
// the server uses: camelCase names, 64-bit integers as strings, enums by
// value name, Timestamps as RFC 3339 strings, implicit-presence fields and
// lists always present, unset message fields omitted.
import { ScalarType, type DescEnum, type DescField, type DescMessage } from "@bufbuild/protobuf";

export type JsonSchema = { [key: string]: unknown };

const TIMESTAMP = "google.protobuf.Timestamp";

/** A component name for a message or enum: its short name (the package has no duplicates). */
export function componentName(desc: DescMessage | DescEnum): string {
  return desc.name;
}

function ref(desc: DescMessage | DescEnum): JsonSchema {
  if (desc.kind === "message" && desc.typeName === TIMESTAMP) return { type: "string", format: "date-time" };
  return { $ref: `#/components/schemas/${componentName(desc)}` };
}

function scalarSchema(scalar: ScalarType): JsonSchema {
  switch (scalar) {
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return { type: "number" };
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return { type: "string", format: "int64", pattern: "^-?[0-9]+$" };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: "string", format: "uint64", pattern: "^[0-9]+$" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", format: "uint32", minimum: 0 };
    default:
      return { type: "integer", format: "int32" };
  }
}

function fieldSchema(field: DescField): JsonSchema {
  switch (field.fieldKind) {
    case "scalar":
      return scalarSchema(field.scalar);
    case "enum":
      return ref(field.enum);
    case "message":
      return ref(field.message);
    case "list": {
      const items = field.listKind === "scalar" ? scalarSchema(field.scalar) : field.listKind === "enum" ? ref(field.enum) : ref(field.message);
      return { type: "array", items };
    }
    case "map": {
      const values = field.mapKind === "scalar" ? scalarSchema(field.scalar) : field.mapKind === "enum" ? ref(field.enum) : ref(field.message);
      return { type: "object", additionalProperties: values };
    }
  }
}

/** Always in the JSON the server sends: implicit-presence fields, lists and maps. */
function alwaysEmitted(field: DescField): boolean {
  if (field.fieldKind === "list" || field.fieldKind === "map") return true;
  return field.oneof === undefined && field.fieldKind !== "message" && !field.proto.proto3Optional;
}

export interface MessageSchemaOptions {
  /** Fields carried elsewhere (path or query), left out of a request body. */
  readonly omit?: readonly string[];
  /** A response lists every always-emitted field as required; a request body requires none. */
  readonly response: boolean;
}

export function messageSchema(desc: DescMessage, options: MessageSchemaOptions): JsonSchema {
  const fields = desc.fields.filter((field) => !options.omit?.includes(field.name));
  const properties = Object.fromEntries(fields.map((field) => [field.jsonName, fieldSchema(field)]));
  const required = options.response ? fields.filter(alwaysEmitted).map((field) => field.jsonName) : [];
  return {
    type: "object",
    // A response with a field the document lacks fails the walk test.
    ...(options.response ? { additionalProperties: false } : {}),
    properties,
    ...(required.length > 0 ? { required } : {}),
  };
}

export function enumSchema(desc: DescEnum): JsonSchema {
  return { type: "string", enum: desc.values.map((value) => value.name) };
}

/** Every message and enum a message refers to, itself included (Timestamp excepted: it is inlined). */
export function reachable(roots: readonly DescMessage[]): Array<DescMessage | DescEnum> {
  const seen = new Map<string, DescMessage | DescEnum>();
  const visit = (desc: DescMessage | DescEnum): void => {
    if (seen.has(desc.typeName) || desc.typeName === TIMESTAMP) return;
    seen.set(desc.typeName, desc);
    if (desc.kind === "enum") return;
    for (const field of desc.fields) {
      if (field.enum) visit(field.enum);
      if (field.message) visit(field.message);
    }
  };
  roots.forEach(visit);
  return [...seen.values()];
}
