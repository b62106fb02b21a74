"""The operator's readers over the Iceberg tables, in the spirit of StackTach's stacky."""
