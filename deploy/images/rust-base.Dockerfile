# The Rust build stage's local base (deploy/images/build-bases.sh): the
# context is a rustup toolchain directory (`rustc --print sysroot`).
ARG BASE=micro-muzero/python-base:bookworm
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev python3-dev \
 && rm -rf /var/lib/apt/lists/*
COPY bin/ /usr/local/rust/bin/
COPY lib/ /usr/local/rust/lib/
ENV PATH=/usr/local/rust/bin:$PATH
