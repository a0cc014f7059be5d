#!/usr/bin/env bash
# Generator to Kafka next to Kafka's own ProducerPerformance tool, at the
# same record size (~180 bytes, the generator's events) and acks=all.
#   scripts/services up && bench/kafka-producer.sh [EVENTS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-1000000}
eval "$(scripts/services env)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/flowline/target}
cargo build -q --release -p flowline-metric-generator
GEN=$CARGO_TARGET_DIR/release/metric-generator
T=bench-gen-$$-$RANDOM
t0=$(date +%s.%N)
"$GEN" --hosts 2000 --count "$N" --rate 0 --start 2026-01-01T00:00:00Z --progress-secs 0 \
  --output "kafka://$FLOWLINE_KAFKA_BOOTSTRAP/$T" --partitions 4 2>&1 | tail -1
t1=$(date +%s.%N)
gen_rate=$(python3 -c "print(round($N/($t1-$t0)))")
SIZE=$("$GEN" --hosts 2000 --count 1000 --rate 0 --start 2026-01-01T00:00:00Z --progress-secs 0 2>/dev/null | awk '{s+=length($0)} END {print int(s/NR)}')
PP=$(java -Xmx512m -cp "$HOME/.cache/flowline/kafka-lib/*" org.apache.kafka.tools.ProducerPerformance \
  --topic "$T-pp" --num-records "$N" --record-size "$SIZE" --throughput -1 \
  --producer-props bootstrap.servers="$FLOWLINE_KAFKA_BOOTSTRAP" acks=all linger.ms=5 compression.type=lz4 enable.idempotence=true 2>/dev/null | tail -1)
pp_rate=$(echo "$PP" | sed -E 's/.* ([0-9.]+) records\/sec.*/\1/' | cut -d. -f1)
echo "record size $SIZE bytes, acks=all, lz4, idempotent, $N records"
echo "metric-generator (wall clock, incl. generation + topic creation): $gen_rate events/s"
echo "ProducerPerformance: $PP"
python3 -c "print('ratio generator / ProducerPerformance: %.2f (target >= 1.0)' % ($gen_rate/$pp_rate))"
