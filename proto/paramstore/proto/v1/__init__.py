"""Generated code for the paramstore.v1 wire contract (`make proto`); do not edit by hand."""
