//! Ping and action round trips from our client to an agent.
//!
//! `cargo run --release --example ping -- URL AGENT_ID_JSON [N]`

use std::time::{Duration, Instant};

use academy::{EntityId, Factory, FactoryOptions};
use serde_json::json;

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let agent = EntityId::from_json(&args[2])?;
    let n: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(300);
    let rt = academy::runtime::runtime()?;
    let factory = Factory::new(&args[1], FactoryOptions::default())?;
    let user = rt.block_on(factory.create_user_client(None))?;
    let t = Some(Duration::from_secs(10));
    for _ in 0..20 {
        rt.block_on(user.ping(agent.clone(), t))?;
    }
    let pings = (0..n)
        .map(|_| rt.block_on(user.ping(agent.clone(), t)))
        .collect::<Result<Vec<_>, _>>()?;
    let actions = (0..n)
        .map(|_| {
            let start = Instant::now();
            rt.block_on(user.action(agent.clone(), "add", &json!([1, 2]), &json!({}), t))
                .map(|_| start.elapsed())
        })
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "libacademy ping p50 {:.3} ms, action p50 {:.3} ms",
        median(pings),
        median(actions)
    );
    rt.block_on(user.close())?;
    Ok(())
}
