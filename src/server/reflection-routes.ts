// gRPC server reflection (grpc.reflection.v1 and the older v1alpha that
// grpcurl, grpcui and Postman still try first), so those tools and `buf curl`
// work without our proto files. No maintained library does this for Connect,
// and protobuf-es already carries every file descriptor, so this answers from
// the generated descriptors. Both versions share one message layout; only the
// package differs, so one handler serves both.
import { create, createRegistry, fromBinary, toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { DatabaseService } from "../../gen/sota/database/v1/database_pb.js";

/** gRPC status codes, as the reflection protocol's ErrorResponse carries it. */
const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

type Request = v1.ServerReflectionRequest;
type Response = v1.ServerReflectionResponse;

/** Every file the services are defined in, with their imports, by file name. */
function filesOf(services: readonly DescService[]): Map<string, DescFile> {
  const files = new Map<string, DescFile>();
  const visit = (file: DescFile): void => {
    if (files.has(file.name + ".proto")) return;
    files.set(file.name + ".proto", file);
    file.dependencies.forEach(visit);
  };
  services.forEach((service) => visit(service.file));
  return files;
}

/** A file first, then everything it imports: clients resolve imports from the same answer. */
function withImports(file: DescFile): Uint8Array[] {
  const seen = new Set<DescFile>();
  const order: DescFile[] = [];
  const visit = (f: DescFile): void => {
    if (seen.has(f)) return;
    seen.add(f);
    order.push(f);
    f.dependencies.forEach(visit);
  };
  visit(file);
  return order.map((f) => toBinary(FileDescriptorProtoSchema, f.proto));
}

/** Answers one request; `services` is everything the router serves, reflection included. */
export function reflectionAnswerer(services: readonly DescService[]): (req: Request) => Response {
  const files = filesOf(services);
  const registry = createRegistry(...files.values());

  const fileOfSymbol = (symbol: string): DescFile | undefined => {
    const type = registry.get(symbol);
    if (type) return type.file;
    // A service, or a method as "package.Service.Method".
    const service = registry.getService(symbol) ?? registry.getService(symbol.slice(0, Math.max(0, symbol.lastIndexOf("."))));
    if (service && (service.typeName === symbol || service.methods.some((m) => `${service.typeName}.${m.name}` === symbol))) return service.file;
    return undefined;
  };
  const notFound = (message: string): Response["messageResponse"] => ({
    case: "errorResponse",
    value: create(v1.ErrorResponseSchema, { errorCode: NOT_FOUND, errorMessage: message }),
  });
  const filesAnswer = (file: DescFile | undefined, what: string): Response["messageResponse"] =>
    file
      ? { case: "fileDescriptorResponse", value: create(v1.FileDescriptorResponseSchema, { fileDescriptorProto: withImports(file) }) }
      : notFound(`${what} not found`);

  const answer = (req: Request): Response["messageResponse"] => {
    const r = req.messageRequest;
    switch (r.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: create(v1.ListServiceResponseSchema, { service: services.map((s) => ({ name: s.typeName })) }),
        };
      case "fileByFilename":
        return filesAnswer(files.get(r.value), `file "${r.value}"`);
      case "fileContainingSymbol":
        return filesAnswer(fileOfSymbol(r.value), `symbol "${r.value}"`);
      case "fileContainingExtension": {
        const extendee = registry.getMessage(r.value.containingType);
        const extension = extendee && registry.getExtensionFor(extendee, r.value.extensionNumber);
        return filesAnswer(extension?.file, `extension ${r.value.containingType}(${r.value.extensionNumber})`);
      }
      case "allExtensionNumbersOfType": {
        const extendee = registry.getMessage(r.value);
        if (!extendee) return notFound(`type "${r.value}" not found`);
        const numbers = [...registry].flatMap((d) => (d.kind === "extension" && d.extendee.typeName === r.value ? [d.number] : []));
        return {
          case: "allExtensionNumbersResponse",
          value: create(v1.ExtensionNumberResponseSchema, { baseTypeName: r.value, extensionNumber: numbers }),
        };
      }
      default:
        return { case: "errorResponse", value: create(v1.ErrorResponseSchema, { errorCode: INVALID_ARGUMENT, errorMessage: "empty reflection request" }) };
    }
  };
  return (req) => create(v1.ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req, messageResponse: answer(req) });
}

/** The reflection services themselves, to add to the list of served services. */
export const REFLECTION_SERVICES: readonly DescService[] = [v1.ServerReflection, v1alpha.ServerReflection];

/**
 * Registers both reflection versions. Open like health (no token; see
 * authorization.ts): it tells only what the published proto contract says.
 */
export function reflectionRoutes(served: readonly DescService[] = [DatabaseService, Health]) {
  const services = [...served, ...REFLECTION_SERVICES];
  const respond = reflectionAnswerer(services);
  return (router: ConnectRouter): void => {
    router.service(v1.ServerReflection, {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) yield respond(req);
      },
    });
    // v1alpha messages are wire-identical to v1: convert through the binary form.
    router.service(v1alpha.ServerReflection, {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          const asV1 = fromBinary(v1.ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, req));
          yield fromBinary(v1alpha.ServerReflectionResponseSchema, toBinary(v1.ServerReflectionResponseSchema, respond(asV1)));
        }
      },
    });
  };
}
