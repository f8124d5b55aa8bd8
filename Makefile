# rvqstream: `make demo` runs the main job, `make test` passes the tests; both set everything up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-server-dev-train
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test protos venv data tokenizer train train-gpu export train-intlm export-intlm bench-intlm codes bench-codes \
	bench-codec bench bench-quick bench-fuzz bench-attacks bench-scale

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "python venv is missing: installing Debian's python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[server,dev,train]'
	touch $@

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

protos: $(STAMP)
	$(PY) scripts/gen_protos.py
	$(VENV)/bin/buf lint

# -- the codec: corpus, tokenizer, training (CPU or GPU), export of the shipped bundle, benchmark --
# the shipped model, in two phases (see MODEL_CARD.md):
# 1. 2 CPU cores: `make train MINUTES=48`, then `make train RESUME=1 MINUTES=125 LR=6e-4` (runs/main;
#    the resumed run restarts the cosine schedule at 125 minutes' share of it)
# 2. one GPU, from phase 1's weights with a second encoder layer: `make train-gpu`, then
#    `make train-gpu RESUME=1 GPU_MINUTES=10.9` (runs/gpu)
# `make export` ships runs/gpu's checkpoint when there is one, else runs/main's.
MINUTES ?= 48
LR ?= 1e-3
GPU_MINUTES ?= 7.3
CKPT ?= $(if $(wildcard runs/gpu/ckpt.pt),runs/gpu/ckpt.pt,runs/main/ckpt.pt)
data: $(STAMP)
	$(PY) -m models.corpus --out data

tokenizer: $(STAMP)
	$(PY) -m models.train_tokenizer --data data --out rvqstream/models/artifacts

train: $(STAMP)
	$(PY) -m models.train --data data --out runs/main --minutes $(MINUTES) --lr $(LR) \
	  --config '{"n_layers": 3, "enc_layers": 1}' $(if $(RESUME),--resume,)

train-gpu: $(STAMP)
	$(PY) -m models.train --data data --out runs/gpu --minutes $(GPU_MINUTES) --lr 1.5e-3 \
	  --init-from runs/main/ckpt.pt --config '{"enc_layers": 2}' --batch-tokens 65536 --buckets 4 \
	  --workers 12 --source-alpha 1 --ckpt-minutes 1.5 $(if $(RESUME),--resume,)

export: $(STAMP)
	$(PY) -m models.export --ckpt $(CKPT) --data data --out rvqstream/models/artifacts \
	  $(if $(wildcard $(dir $(CKPT))card_info.json),--card-info $(dir $(CKPT))card_info.json,)

# the integer model (the exact tier's default bundle): quantization-aware training from the float
# model's weights on the corpus, then the bundle (see rvqstream/models/artifacts/MODEL_CARD.md)
INT_MINUTES ?= 75
INT_LR ?= 1.5e-4
OLD_BOOST := '{"fortunes": 2, "gcide": 2, "kjv": 2, "man": 2, "pydoc": 2, "wordnet": 2}'
train-intlm: $(STAMP)
	$(PY) -m models.train_intlm --data data --out runs/intlm --minutes $(INT_MINUTES) --lr $(INT_LR) \
	  --threads 2 --eval-msgs 200 --boost $(OLD_BOOST) $(if $(RESUME),--resume,)

export-intlm: $(STAMP)
	$(PY) -m models.export_intlm --lm runs/intlm/lm.npz --out rvqstream/models/artifacts \
	  $(if $(wildcard runs/intlm/train_info.json),--info runs/intlm/train_info.json,)

bench-intlm: $(STAMP)
	$(PY) bench/intlm_check.py

# the message codes (see rvqstream/models/artifacts/codes/MODEL_CARD.md): the teacher as an int8
# ONNX encoder, residual k-means on its embeddings of the training split, the bundle with its
# near-duplicate threshold calibrated on the valid split; then the benchmark
codes: $(BENCH_STAMP)
	$(PY) -m models.export_encoder --out runs/codes
	$(PY) -m models.train_codes --data data --encoder runs/codes --out runs/codes --uniform 100000
	$(PY) -m models.export_codes --encoder runs/codes --rvq runs/codes/rvq.npz --data data \
	  --out rvqstream/models/artifacts/codes

bench-codes: $(BENCH_STAMP)
	$(PY) bench/semantic_codes.py $(ARGS)

bench-codec: $(STAMP)
	$(PY) -m pip install --quiet -e '.[server,dev,train,bench]'
	$(PY) bench/codec_bench.py

# -- the scoreboard: rvqstream against its anchors, results and plots in bench/results/ --------
# make bench                  full run (whole test split; long)
# make bench ARGS=--quick     small samples, under 5 minutes on 2 cores (same as make bench-quick)
# make bench ARGS='--jsonl my.jsonl'   also rate messages of your own ({"text": ...} per line)
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[server,dev,train,bench]'
	touch $@

bench: $(BENCH_STAMP)
	$(PY) bench/scoreboard.py $(ARGS)

bench-quick: $(BENCH_STAMP)
	$(PY) bench/scoreboard.py --quick $(ARGS)

# -- fuzzing: the parsers (45 min on one core), then a real server's gRPC surface (30 min) ----------
# make bench-fuzz                                        bench/results/fuzz.json; the scoreboard reports it
# make bench-fuzz ARGS='--minutes 1.5 --grpc-minutes 0.5'   a short run
bench-fuzz: $(STAMP)
	$(PY) bench/fuzz.py $(ARGS)

# -- scale-out: the channel log on SQLite against NATS JetStream (1 and 3 nodes, with and without
# sync_interval: always) and two replicas against one; about 10 minutes on 2 cores
# make bench-scale                  bench/results/scale_out.json; the scoreboard reports it
# make bench-scale ARGS=--quick     a couple of minutes (write it elsewhere: ARGS='--quick --out /tmp/s.json')
bench-scale: $(STAMP)
	$(PY) bench/scale_out.py $(ARGS)

# -- attacks on the limits against a real server, with their baselines (a few minutes) ------------
bench-attacks: $(STAMP)
	$(PY) bench/attacks.py $(ARGS)
