"""The wire contract: `paramstore.proto.v1` holds the generated messages and service stubs."""
