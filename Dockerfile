FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY publisher ./publisher
COPY moderation ./moderation
COPY channels ./channels
COPY workers ./workers
# torch first and pinned to the CPU build: an unpinned torch pulls a multi-GB CUDA build.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir .
CMD ["matrix", "api", "--host", "0.0.0.0"]
