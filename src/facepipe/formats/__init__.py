"""The files stages hand each other: one module owns reading and writing each format,
with its version and a short history. Stage modules import these (and `media`,
`models`), never each other, so a stage can be replaced as long as its files keep
their format."""
