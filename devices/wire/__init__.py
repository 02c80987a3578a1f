"""Wire format v1: what a glucose meter (or its phone gateway) publishes. Defined here, once,
split by job so that each reader imports only what it needs:

- its words (units and the conversion factor, meal, sample, source, GLS status bits, the
  sequence modulus and the ack window) are the kernel's (`kernel/`), which every stage shares;
- `topics`: the topic names, and which broker account may use which (the ACL).
- `messages`: what a meter sends, as frozen dataclasses that encode themselves.
- `decoding`: ingest's side: parse -> validate (every problem with its JSON path) -> normalise.

`wire_v1.schema.json` beside these modules is the same contract as JSON Schema (tests hold the
two together); `docs/wire-format.md` explains it to device makers.
"""
