"""Generated protobuf and gRPC code for rvqstream.v1 (private: see scripts/gen_protos.py)."""
