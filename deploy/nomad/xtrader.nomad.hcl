# xtrader on Nomad: one job, N allocations of the docker task, each taking its shard of one subscription
# list (SHARD=K/N from the allocation index) and uploading its closed Parquet files to one bucket.
#   nomad job run deploy/nomad/xtrader.nomad.hcl
# Credentials: static keys from Nomad Variables (below), or none on EC2 clients with an instance profile.
# Pin the image to an immutable tag (version and commit); a rolling upgrade is a change of that tag.
job "xtrader" {
  type = "service"

  group "collectors" {
    # N: keep in step with the "/3" of SHARD below.
    count = 3

    # One allocation at a time: the new one starts, turns healthy (/readyz), then the old one stops.
    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "30s"
      healthy_deadline = "5m"
      auto_revert      = true
    }

    # Local data lives on the allocation's ephemeral disk; files leave for S3 as they close, and what a stop
    # could not upload is uploaded by the next allocation on the same client (migrate/sticky keep the disk).
    ephemeral_disk {
      size    = 20480
      sticky  = true
      migrate = true
    }

    network {
      port "metrics" {
        to = 9464
      }
    }

    service {
      name     = "xtrader"
      port     = "metrics"
      provider = "nomad"

      check {
        name     = "ready"
        type     = "http"
        path     = "/readyz"
        interval = "15s"
        timeout  = "5s"
      }
    }

    task "xtrader" {
      driver = "docker"

      # Longer than XTRADER_SHUTDOWN_TIMEOUT_SECONDS: SIGTERM, drain, close files, upload, exit.
      kill_timeout = "120s"
      kill_signal  = "SIGTERM"

      config {
        image = "registry.example.com/xtrader:0.1.0-0123abcd4567"
        ports = ["metrics"]
      }

      # Object names carry INSTANCE_ID: the shard and the allocation, unique even while an update runs the
      # old and the new allocation of one index side by side.
      env {
        SUBSCRIPTIONS                    = "TRADES:BINANCE_FUTURES@BTCUSDT,L2:BINANCE_FUTURES@BTCUSDT,TRADES:BINANCE_FUTURES@ETHUSDT,L2:BINANCE_FUTURES@ETHUSDT,TRADES:OKX_SWAP@BTCUSDT,L2:OKX_SWAP@BTCUSDT,TRADES:OKX_SWAP@ETHUSDT,L2:OKX_SWAP@ETHUSDT,TRADES:DERIBIT@BTC-PERPETUAL,L2:DERIBIT@BTC-PERPETUAL"
        SHARD                            = "${NOMAD_ALLOC_INDEX}/3"
        INSTANCE_ID                      = "xtrader-${NOMAD_ALLOC_INDEX}-${NOMAD_SHORT_ALLOC_ID}"
        SINK                             = "parquet"
        # The allocation's shared data directory, which the docker driver mounts at /alloc: the part of the
        # ephemeral_disk that sticky/migrate carry to the next allocation (no volume mount needed).
        OUTPUT_DIRECTORY                 = "/alloc/data"
        UPLOAD_URL                       = "s3://example-market-data/xtrader"
        AWS_REGION                       = "eu-west-1"
        METRICS_ADDR                     = "0.0.0.0:9464"
        LOG_FORMAT                       = "json"
        DERIBIT_USE_TESTNET              = "false"
        XTRADER_SHUTDOWN_TIMEOUT_SECONDS = "100"
        XTRADER_UPLOAD_STOP_WAIT_SECONDS = "80"
      }

      # Secrets from Nomad Variables (nomad var put nomad/jobs/xtrader AWS_ACCESS_KEY_ID=... ...), rendered
      # into the environment only, never into the job file.
      template {
        destination = "secrets/xtrader.env"
        env         = true
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/xtrader" -}}
          {{- range $key, $value := . }}
          {{ $key }}={{ $value }}
          {{- end }}
          {{- end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 512
        memory_max = 1024
      }
    }
  }
}
