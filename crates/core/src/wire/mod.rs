//! The API's requests and answers, shared by `vesper serve` and the typed client, so both sides
//! of a route agree by construction; the OpenAPI document is derived from them.
