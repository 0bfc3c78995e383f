# frozen_string_literal: true

require 'json'
require 'time'

module Frontend
  # One JSON object per line, whole lines only, flushed at once (stdout in a pod).
  class JsonLog
    def initialize(io = $stdout, service: 'frontend')
      @io = io
      @service = service
      @lock = Mutex.new
    end

    attr_reader :io

    # entry: a Hash; `time` and `service` come first.
    def log(entry)
      line = JSON.generate({ time: Time.now.utc.iso8601(3), service: @service }.merge(entry))
      @lock.synchronize do
        @io.write(line, "\n")
        @io.flush
      end
    rescue IOError, SystemCallError
      nil
    end
  end

  # Rack middleware: one JSON log line per request (written once the answer is sent), the
  # request counters, and a JSON 500 for an exception out of the app, logged in that same line.
  # log_requests: false for the health listener (probe noise): its successful requests are
  # neither logged nor counted, but a failure still is.
  class RequestLog
    def initialize(app, log:, stats:, log_requests: true, listener: 'app')
      @app = app
      @log = log
      @stats = stats
      @log_requests = log_requests
      @listener = listener
    end

    def call(env)
      started = Frontend.monotonic
      @stats.request_started if @log_requests
      error = nil
      begin
        status, headers, body = @app.call(env)
      rescue StandardError => e
        error = e
        status, headers, body = failure(e)
      end
      [status, with_length(headers, body), Rack::BodyProxy.new(body) { finished(env, status.to_i, started, error) }]
    end

    # Trace id for the log: the Root of X-Amzn-Trace-Id, else the W3C trace-id.
    def self.trace_id(amzn, traceparent)
      if amzn
        root = amzn[/(?:\A|;)\s*Root=([^;]+)/, 1]
        return root ? root.strip : amzn
      end
      if traceparent
        parts = traceparent.strip.split('-')
        return parts.size >= 4 ? parts[1] : traceparent
      end
      nil
    end

    private

    # Content-Length for a body already in memory (the proxy around it hides that from Puma,
    # which would otherwise answer chunked).
    def with_length(headers, body)
      return headers unless body.is_a?(Array) && !headers.key?('Content-Length')

      headers.merge('Content-Length' => body.sum(&:bytesize).to_s)
    end

    def failure(error)
      # Puma raises ForceShutdown in a request still running when the drain time is up.
      forced = defined?(Puma::ThreadPool::ForceShutdown) && error.is_a?(Puma::ThreadPool::ForceShutdown)
      @stats.forced! if forced
      status = forced ? 503 : 500
      [status, { 'Content-Type' => 'application/json' },
       [JSON.generate(error: status == 503 ? 'shutting down' : 'internal error')]]
    end

    def finished(env, status, started, error)
      failed = status >= 500 || !error.nil?
      if @log_requests
        @stats.request_finished(status)
      elsif failed
        @stats.error!
      end
      return unless @log_requests || failed

      amzn = env['HTTP_X_AMZN_TRACE_ID']
      traceparent = env['HTTP_TRACEPARENT']
      entry = { method: env['REQUEST_METHOD'], path: env['PATH_INFO'], status: status,
                duration_ms: ((Frontend.monotonic - started) * 1000).round(3),
                trace_id: RequestLog.trace_id(amzn, traceparent),
                x_amzn_trace_id: amzn, traceparent: traceparent }
      entry[:listener] = @listener unless @log_requests
      entry[:error] = "#{error.class}: #{error.message}" if error
      @log.log(entry)
    end
  end
end
