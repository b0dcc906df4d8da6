# AML-KD Explorer app image. Untested here: these machines have no Docker engine.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY engine/ engine/
COPY app/ app/
COPY assets/ assets/
COPY .streamlit/ .streamlit/
ENV AMLKD_RUNS_DIR=/data/runs
VOLUME /data
EXPOSE 8501
# Inside the container bind to all interfaces so `docker run -p 8501:8501` reaches it.
CMD ["python", "-m", "streamlit", "run", "app/streamlit_app.py", \
     "--server.address", "0.0.0.0", "--server.port", "8501", "--server.headless", "true", \
     "--browser.gatherUsageStats", "false"]
