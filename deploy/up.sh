#!/usr/bin/env bash
# The multi-host rehearsal on one machine: four validator containers on their own addresses.
#   deploy/up.sh            # writes deploy/net once, builds the image, starts the network
#   docker compose -f deploy/compose.yaml down
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -e deploy/net/genesis.json ]; then
  cargo run --release --bin cairnd -- testnet --protocol hotstuff \
    --hosts validator-0:26600,validator-1:26600,validator-2:26600,validator-3:26600 \
    --api-bind 0.0.0.0 --out deploy/net
fi
# The containers run as this user, so they can read the homes' 0600 key files.
export CAIRN_UID="$(id -u)" CAIRN_GID="$(id -g)"
docker compose -f deploy/compose.yaml up --build -d
# A wallet profile for the network (the first wallet, validator 0's API on this host).
cargo run --release --bin cairn -- config set compose --node http://127.0.0.1:27600 \
  --key-file deploy/net/wallets/wallet-0.json --genesis-file deploy/net/genesis.json
echo "network up: cairn --profile compose status"
