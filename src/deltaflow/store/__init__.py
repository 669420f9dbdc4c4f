"""The tracking store: Delta tables, the engines that read and write them, and the write buffer."""
