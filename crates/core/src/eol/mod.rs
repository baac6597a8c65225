//! The end-of-line test: every board measured against limits before it is called done. The model
//! is OpenHTF's (google/openhtf, `openhtf/core/test_record.py`, `measurements.py`,
//! `util/validators.py`), so records are familiar and portable: a [`plan::TestPlan`] of ordered
//! phases, each with measurements and one validator each ([`validators`]); what a board prints in
//! factory mode ([`console`]); one [`record::TestRecord`] per unit and attempt, in OpenHTF's field
//! names (`schemas/test-record.schema.json`).

pub mod console;
pub mod plan;
pub mod record;
pub mod report;
pub mod validators;
