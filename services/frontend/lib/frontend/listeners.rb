# frozen_string_literal: true

# The frontend's listeners: Puma (puma 5.6, Rack 2.2) in one process, configured here.
#
# Capacity (README.md, "Capacity"): THREADS requests are served at once; while all threads are
# busy Puma stops accepting, and further connections wait in the kernel's listen queue (BACKLOG,
# capped by net.core.somaxconn), to be served in turn. So THREADS + BACKLOG concurrent requests
# (64 + 1024 = 1088) are served without refusal; beyond that the kernel drops new connection
# attempts (the client retries the SYN) and the count shows in netns_listen_overflows.
# One process, no Puma workers (cluster mode): the tally, the observed split and the counters
# live in this process's memory and must be one per pod, as the page shows one pod's view;
# the pod has half a CPU (the chart's limit), and the work is mostly waiting on the backends,
# which threads do well under Ruby's global VM lock. Scale out with replicas.
require 'puma'
require 'puma/server'
require 'puma/events'
require_relative '../frontend'

module Frontend
  THREADS = 64 # requests in progress at once
  MIN_THREADS = 64 # started up front, so capacity never waits on a thread being spawned
  BACKLOG = 1024 # connections waiting to be accepted (Puma's default, made explicit)
  FAST_INLINE = 1 # requests served in a row on one connection while others wait (see #puma)
  HEALTH_THREADS = 2 # probes get their own pool: a saturated app still answers /health
  DRAIN_TIMEOUT_S = 10 # on SIGTERM, in-flight requests get this long; then they are cut (503)
  MAX_BODY_BYTES = 1024 * 1024 # larger request bodies are refused (400) before they are read
  SOMAXCONN = '/proc/sys/net/core/somaxconn'

  # {threads:, backlog:, concurrent_requests:}: what the listener serves without refusal.
  def self.capacity(threads, backlog, somaxconn_path = SOMAXCONN)
    limit = File.read(somaxconn_path).to_i
    queue = limit.positive? ? [backlog, limit].min : backlog
    { threads: threads, backlog: queue, concurrent_requests: threads + queue, workers: 0 }
  rescue SystemCallError
    { threads: threads, backlog: backlog, concurrent_requests: threads + backlog, workers: 0 }
  end

  # Puma's event sink: every request Puma refuses or fails outside the app becomes one JSON log
  # line and a count in ServerStats, instead of a plain-text line on stderr.
  class PumaEvents < Puma::Events
    def initialize(log, stats, listener)
      super(Puma::NullIO.new, Puma::NullIO.new)
      @json = log
      @stats = stats
      @listener = listener
    end

    def log(str)
      @json.log(event: 'puma', listener: @listener, message: str.to_s)
    end

    def write(str)
      log(str)
    end

    def debug(str)
      log(str) if ENV.key?('PUMA_DEBUG')
    end

    # Puma's fatal configuration errors (it exits, as Puma::Events#error does).
    def error(str)
      @json.log(event: 'puma_error', listener: @listener, message: str.to_s)
      exit 1
    end

    # A malformed request: Puma answered 400 (501 for an unsupported Transfer-Encoding).
    def parse_error(error, client)
      @stats.refused!
      status = error.is_a?(Puma::HttpParserError501) ? 501 : 400
      @json.log({ event: 'request_refused', listener: @listener, status: status, error: describe(error) }
                .merge(request_fields(client)))
    end

    def ssl_error(error, _socket)
      @stats.refused!
      @json.log(event: 'request_refused', listener: @listener, error: describe(error))
    end

    def connection_error(error, client, text = 'HTTP connection error')
      @stats.error!
      @json.log({ event: 'connection_error', listener: @listener, where: text, error: describe(error) }
                .merge(request_fields(client)))
    end

    # Anything else Puma caught: a failure in the listen loop, reading a request, or an
    # exception RequestLog did not catch (Puma's lowlevel error handler answered it).
    def unknown_error(error, client = nil, text = 'Unknown error')
      @stats.error!
      @json.log({ event: 'server_error', listener: @listener, where: text, error: describe(error) }
                .merge(request_fields(client)))
    end

    def debug_error(error, _client = nil, text = '')
      debug("#{text} #{describe(error)}") if error
    end

    private

    def describe(error)
      "#{error.class}: #{error.message}"
    end

    def request_fields(client)
      env = client.respond_to?(:env) ? client.env : nil
      return {} unless env.is_a?(Hash)

      { method: env['REQUEST_METHOD'], path: env['REQUEST_PATH'] || env['PATH_INFO'] }.compact
    end
  end

  # Refuses a request body over MAX_BODY_BYTES, and chunked request bodies, before Puma buffers
  # them (Puma 5.6 has no body limit; 6.x has http_content_length_limit). The app takes no
  # bodies (GET and HEAD only), and a large one would fill the pod's /tmp. Prepended to
  # Puma::Client#setup_body, which runs once a request's headers are parsed; the raised parser
  # errors take Puma's own path: a 400 (501) answer and PumaEvents#parse_error.
  module BodyLimit
    def setup_body
      if @env['HTTP_TRANSFER_ENCODING']
        raise Puma::HttpParserError501, 'chunked request bodies are not accepted'
      end

      length = @env['CONTENT_LENGTH'].to_s
      if length.match?(/\A\d+\z/) && length.to_i > MAX_BODY_BYTES
        raise Puma::HttpParserError, "request body of #{length} bytes; at most #{MAX_BODY_BYTES} are accepted"
      end

      super
    end
  end
  Puma::Client.prepend(BodyLimit) unless Puma::Client <= BodyLimit

  # The whole service: the app on PORT, the optional health listener on HEALTH_PORT, their
  # counters and log. #start serves; #stop (safe in a signal trap) stops accepting, and
  # #wait lets in-flight requests finish (force-cut after DRAIN_TIMEOUT_S).
  class Service
    attr_reader :config, :app, :stats, :log

    def initialize(config, log: JsonLog.new($stdout), threads: THREADS, min_threads: MIN_THREADS,
                   backlog: BACKLOG, drain_timeout: DRAIN_TIMEOUT_S)
      @config = config
      @log = log
      @stats = ServerStats.new(capacity: Frontend.capacity(threads, backlog))
      @app = App.new(config, stats: @stats)
      @server = puma(RequestLog.new(@app, log: log, stats: @stats), 'app',
                     min_threads: [min_threads, threads].min, max_threads: threads, drain_timeout: drain_timeout)
      @server.add_tcp_listener(config.host, config.port, true, backlog)
      @stats.listener = @server.binder.ios.first
      return unless config.health_port

      health_app = RequestLog.new(HealthApp.new, log: log, stats: @stats, log_requests: false, listener: 'health')
      @health = puma(health_app, 'health', min_threads: 0, max_threads: HEALTH_THREADS, drain_timeout: drain_timeout)
      @health.add_tcp_listener(config.host, config.health_port, true, BACKLOG)
    end

    def port
      @server.connected_ports.first
    end

    def health_port
      @health&.connected_ports&.first
    end

    def servers
      [@server, @health].compact
    end

    def start
      @server.run(true, thread_name: 'app')
      @health&.run(true, thread_name: 'health')
      self
    end

    # True while every listener's thread runs.
    def running?
      servers.all? { |server| server.thread&.alive? }
    end

    # Stop accepting; in-flight requests go on. Only writes to Puma's pipes: safe in a trap.
    def stop
      servers.each(&:stop)
    end

    # Waits for the listeners to finish their in-flight requests; false when `timeout` ran out
    # or a request had to be cut off.
    def wait(timeout)
      deadline = Frontend.monotonic + timeout
      joined = servers.all? { |server| server.thread.nil? || server.thread.join([deadline - Frontend.monotonic, 0].max) }
      joined && @stats.forced.zero?
    end

    private

    def puma(app, listener, min_threads:, max_threads:, drain_timeout:)
      events = PumaEvents.new(@log, @stats, listener)
      Puma::Server.new(app, events,
                       min_threads: min_threads, max_threads: max_threads,
                       # Requests are read in full by Puma's reactor before a thread takes them.
                       queue_requests: true,
                       # Idle keep-alive connections close after 20 s (Puma's default).
                       persistent_timeout: Puma::Const::PERSISTENT_TIMEOUT,
                       # Fair turns: while other requests wait, a thread does not serve a
                       # connection's next request inline but queues it behind them (Puma's
                       # default is 10 in a row). With many keep-alive clients (Envoy's pool)
                       # this cut p99 at 200 clients from ~2 s to ~0.7 s here, at the same rate.
                       max_fast_inline: FAST_INLINE,
                       first_data_timeout: Puma::Const::FIRST_DATA_TIMEOUT,
                       force_shutdown_after: drain_timeout,
                       environment: 'production',
                       lowlevel_error_handler: method(:lowlevel_error))
    end

    # Puma's answer when the app could not give one (RequestLog catches the app's own errors).
    def lowlevel_error(_error, _env, status = 500)
      [status, { 'Content-Type' => 'application/json' }, [JSON.generate(error: 'internal error')]]
    end
  end
end
