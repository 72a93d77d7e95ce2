//! Seeds a fresh database with a realistic day of collected API responses — 400 calls to three
//! services, some of them repeated — through the `datadump` data access, prints what was stored
//! and what was skipped as a duplicate, then runs the incremental parser over it in batches.
//!
//! ```text
//! cargo run --example seed_data
//! ```

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use pgfresh::datadump::{self, InsertOutcome, NewApiResponse};
use serde_json::json;

/// How many calls the collector made.
const CALLS: u32 = 400;
/// How many rows the parser takes at a time.
const BATCH: u32 = 150;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("seed_data failed: {e}");
        std::process::exit(1);
    }
}

async fn run() -> pgfresh::Result<()> {
    let db = pgfresh::Harness::new(&pgfresh::MIGRATOR).test_db().await?;
    println!("database {} (source: {})", db.name(), db.source());

    let mut tally: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for call in collected_calls() {
        let service = call.1;
        let entry = tally.entry(service).or_default();
        match datadump::insert(db.pool(), &call.0).await? {
            InsertOutcome::Stored(_) => entry.0 += 1,
            InsertOutcome::Duplicate => entry.1 += 1,
        }
    }
    println!("{:<10} {:>7} {:>8}", "service", "stored", "skipped");
    for (service, (stored, skipped)) in &tally {
        println!("{service:<10} {stored:>7} {skipped:>8}");
    }
    let (stored, skipped) = tally.values().fold((0, 0), |(a, b), (s, k)| (a + s, b + k));
    println!("{:<10} {stored:>7} {skipped:>8}", "total");

    let mut batch_no = 0;
    loop {
        let batch = datadump::unparsed(db.pool(), BATCH).await?;
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            break;
        };
        batch_no += 1;
        println!(
            "batch {batch_no}: {} rows from {} to {}",
            batch.len(),
            first.created_at,
            last.created_at
        );
        let ids: Vec<i32> = batch.iter().map(|row| row.id).collect();
        datadump::mark_parsed(db.pool(), &ids).await?;
    }
    db.close().await
}

/// A day of calls, in the order the collector made them, with each call's service: mostly new
/// calls, and about one in eight a repeat of an earlier one (a retry, or a page polled again).
/// Generated from a fixed seed, so every run stores and skips the same rows.
fn collected_calls() -> Vec<(NewApiResponse, &'static str)> {
    let start: NaiveDateTime = NaiveDate::from_ymd_opt(2024, 5, 1)
        .and_then(|d| d.and_hms_opt(6, 0, 0))
        .expect("a valid date");
    let mut random = Lcg(0x5eed);
    let mut calls: Vec<(String, &'static str, &'static str)> = Vec::new();
    let mut rows = Vec::new();
    for i in 0..CALLS {
        let call = if i > 0 && random.below(8) == 0 {
            calls[random.below(i) as usize].clone()
        } else {
            new_call(i, &mut random)
        };
        calls.push(call.clone());
        let (url, service, method) = call;
        let row = NewApiResponse {
            request_header: Some(json!({
                "Accept": "application/json",
                "User-Agent": "collector/1.4",
                "X-Request-Id": format!("req-{i:05}"),
            })),
            response_body: Some(format!(r#"{{"ok": true, "call": {i}}}"#)),
            response_header: Some(json!({
                "Content-Type": "application/json; charset=utf-8",
                "X-RateLimit-Remaining": (1000 - i).to_string(),
                "ETag": null,
            })),
            created_at: Some(start + TimeDelta::seconds(i64::from(i) * 97)),
            ..NewApiResponse::new(url, service, method)
        };
        rows.push((row, service));
    }
    rows
}

/// The `i`-th call, to one of three services: URL, service, method.
fn new_call(i: u32, random: &mut Lcg) -> (String, &'static str, &'static str) {
    match random.below(3) {
        0 => (
            format!("https://catalog.example.com/v2/items?page={i}"),
            "catalog",
            "GET",
        ),
        1 => (
            format!("https://billing.example.com/v1/invoices/{}", 7000 + i),
            "billing",
            if random.below(4) == 0 { "POST" } else { "GET" },
        ),
        _ => {
            let station = ["KSEA", "EGLL", "LFPG", "RJTT", "YSSY"][random.below(5) as usize];
            (
                format!("https://weather.example.com/forecast?station={station}&call={i}"),
                "weather",
                "GET",
            )
        }
    }
}

/// A small linear congruential generator: enough variety for sample data, no dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}
