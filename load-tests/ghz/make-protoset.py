#!/usr/bin/env python3
"""Writes otlp.protoset for ghz from the installed `opentelemetry-proto` package.

ghz needs the OTLP service definitions; the project does not vendor the
.proto files, so this serializes the compiled descriptors that the PyPI
package carries (the three collector services and everything they import)
into a FileDescriptorSet, dependencies first:

    python3 -m pip install -r tests/requirements.txt
    python3 load-tests/ghz/make-protoset.py [--out load-tests/ghz/otlp.protoset]

The file is generated, not committed (.gitignore). It prints the methods it
contains, one per line, e.g. opentelemetry.proto.collector.logs.v1.LogsService.Export.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    from google.protobuf import descriptor_pb2
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
except ImportError as e:  # the install hint, not a traceback
    sys.exit(f"{e}: run `python3 -m pip install -r tests/requirements.txt`")


def add(fd, out, seen):
    """Appends `fd` after its dependencies (protoc's order in a protoset)."""
    if fd.name in seen:
        return
    seen.add(fd.name)
    for dep in fd.dependencies:
        add(dep, out, seen)
    proto = descriptor_pb2.FileDescriptorProto()
    fd.CopyToProto(proto)
    out.file.append(proto)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(HERE, "otlp.protoset"))
    a = p.parse_args()
    fds = descriptor_pb2.FileDescriptorSet()
    seen = set()
    for module in (logs_service_pb2, metrics_service_pb2, trace_service_pb2):
        add(module.DESCRIPTOR, fds, seen)
    with open(a.out, "wb") as f:
        f.write(fds.SerializeToString())
    for file in fds.file:
        for service in file.service:
            for method in service.method:
                print(f"{file.package}.{service.name}.{method.name}")


if __name__ == "__main__":
    main()
