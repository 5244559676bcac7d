//! Diagnostic: runs what `homa-sim` would with the same arguments and
//! prints every measured completed message as `id,size,time_ps,ideal_ps`
//! (creation order, bytes, completion time and unloaded time in
//! picoseconds), so that two runs with the same arrivals (any
//! `--endpoints-per-host`) can be compared message by message. The
//! receivers' silence RESENDs, retransmissions and senders' BUSY packets,
//! summed over every endpoint, go to stderr.
//!
//! `cargo run --release -p homa-sim --example k_samples -- --paper -w w5 ... > s.csv`
use clap::Parser;
use homa_sim::cli::SimArgs;
use homa_sim::Simulator;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: SimArgs,
}

fn main() {
    let cli = Cli::parse();
    let mut cfg = cli.args.config().expect("configuration");
    cfg.run.keep_samples = true;
    let mut sim = Simulator::new(&cfg).expect("simulator");
    let r = sim.run(|_| {}).expect("run");
    eprintln!("{:?}", r.messages);
    let (mut busy, mut silence, mut fast, mut retx, mut dup) = (0, 0, 0, 0, 0);
    for e in 0..cfg.topology.hosts() * cfg.host.endpoints {
        let st = sim.endpoint(e).stats();
        busy += st.busy_sent_waiting;
        silence += st.resends_silence;
        fast += st.resends_fast;
        retx += st.data_retransmitted;
        dup += st.duplicate_data;
    }
    eprintln!(
        "busy_sent_waiting {busy} resends_silence {silence} resends_fast {fast} \
         retransmitted {retx} duplicates {dup}"
    );
    for s in sim.samples() {
        println!("{},{},{},{}", s.id, s.size, s.time, s.ideal);
    }
}
