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
# Bound to every interface the app needs accounts, or it refuses to start: create them with
#   docker run -i -v amlkd:/data IMAGE python -m engine users add NAME --role admin   (password on stdin)
# and name the host people use in AMLKD_ALLOWED_HOSTS (requests for any other Host are refused).
ENV AMLKD_USERS=/data/users.json
ENV AMLKD_ALLOWED_HOSTS=localhost,127.0.0.1
VOLUME /data
EXPOSE 8501
# Inside the container bind to all interfaces so `docker run -p 8501:8501` reaches it.
CMD ["python", "-m", "streamlit", "run", "app/launch.py", \
     "--server.address", "0.0.0.0", "--server.port", "8501", "--server.headless", "true", \
     "--browser.gatherUsageStats", "false"]
