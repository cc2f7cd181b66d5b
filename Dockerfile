FROM python:3.11-slim
WORKDIR /app
# a CJK font for the monitor's daily report PDF (found at /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc)
RUN apt-get update && apt-get install -y --no-install-recommends fonts-noto-cjk && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY core ./core
COPY publisher ./publisher
COPY moderation ./moderation
COPY channels ./channels
COPY workers ./workers
COPY monitor ./monitor
# torch first and pinned to the CPU build: an unpinned torch pulls a multi-GB CUDA build.
# gcc only while installing: it builds the lexicon path's C loops (moderation/_lexfast.c), then goes.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir . \
 && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
CMD ["matrix", "api", "--host", "0.0.0.0"]
