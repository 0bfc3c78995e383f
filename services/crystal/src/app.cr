# Crystal backend of the App Mesh workshop. Standard library only.
#
# Fault-injection knobs (environment), for the mesh's resilience tests:
#   RESPONSE_DELAY_MS=N  answer / and /crystal after N ms (a "hung" backend: N far above the timeout)
#   FAIL_EVERY=N         every Nth / or /crystal answers 503 (N=2: half, N=1: all); /health is
#                        never affected, so health checks pass while requests fail
#
# Listeners (environment):
#   PORT=3000            the application (in the mesh, Envoy intercepts this port and
#                        requires mTLS client certificates)
#   BIND_ADDRESS=0.0.0.0 the address both listeners bind
#   HEALTH_PORT=N        optional; unset or empty: no extra listener. When set, a second
#                        listener on BIND_ADDRESS:N answers only GET/HEAD /health (200, the
#                        same JSON as /health on PORT) and 404 for every other path, never
#                        the application routes: the pod annotation
#                        appmesh.k8s.aws/ports: "3000" keeps Envoy off this port, so kubelet
#                        probes reach it without a client certificate. It must differ from
#                        PORT (else the service logs an error and exits 2 at startup). Its
#                        requests are not logged (probe noise). It closes with PORT on SIGTERM.
#
# The library part (config, request handling, draining) lives here so that the
# specs can run it in-process; src/main.cr only wires it to the environment,
# the listening socket and the signals.
require "http/server"
require "http/client"
require "json"

module CrystalApp
  DRAIN_TIMEOUT = 10.seconds
  EXIT_CONFIG_ERROR = 2

  # A setting in the environment the service refuses to start with.
  class ConfigError < Exception
  end

  # Settings read from the environment (see `Config.from_env`).
  struct Config
    getter port : Int32
    getter host : String
    getter service : String
    getter version : String
    getter pod : String
    getter zone : String
    getter response_delay : Time::Span
    getter fail_every : Int32
    # nil: no health listener.
    getter health_port : Int32?

    def initialize(@port = 3000, @host = "0.0.0.0", @service = "crystal",
                   @version = "1", @pod = System.hostname, @zone = "unknown",
                   @response_delay = Time::Span.zero, @fail_every = 0, @health_port = nil)
    end

    # `env` is ENV or any object answering `[]?(String)` (a Hash in specs).
    # Raises ConfigError when HEALTH_PORT is not a port or equals PORT.
    def self.from_env(env = ENV) : Config
      delay_ms = env["RESPONSE_DELAY_MS"]?.try(&.to_i?) || 0
      fail_every = env["FAIL_EVERY"]?.try(&.to_i?) || 0
      port = env["PORT"]?.try(&.to_i?) || 3000
      new(
        port: port,
        health_port: health_port_from(env["HEALTH_PORT"]?, port),
        host: present(env["BIND_ADDRESS"]?) || "0.0.0.0",
        service: present(env["SERVICE_NAME"]?) || "crystal",
        version: present(env["APP_VERSION"]?) || "1",
        pod: present(env["POD_NAME"]?) || System.hostname,
        zone: present(env["AVAILABILITY_ZONE"]?) || "unknown",
        response_delay: delay_ms > 0 ? delay_ms.milliseconds : Time::Span.zero,
        fail_every: fail_every > 0 ? fail_every : 0,
      )
    end

    private def self.present(value : String?) : String?
      value.nil? || value.empty? ? nil : value
    end

    private def self.health_port_from(value : String?, port : Int32) : Int32?
      raw = value.try(&.strip)
      return nil if raw.nil? || raw.empty?
      health_port = raw.matches?(/\A\d+\z/) ? raw.to_i? : nil
      unless health_port && 1 <= health_port <= 65535
        raise ConfigError.new("HEALTH_PORT must be a TCP port (1-65535), got #{value.inspect}")
      end
      if health_port == port
        raise ConfigError.new("HEALTH_PORT (#{health_port}) must differ from PORT (#{port})")
      end
      health_port
    end
  end

  # The trace id to log: the Root of X-Amzn-Trace-Id, else the W3C trace-id.
  def self.trace_id(headers : HTTP::Headers) : String?
    if amzn = headers["X-Amzn-Trace-Id"]?
      if match = amzn.match(/(?:^|;)\s*Root=([^;]+)/)
        return match[1].strip
      end
      return amzn
    end
    if tp = headers["traceparent"]?
      parts = tp.strip.split('-')
      return parts.size >= 4 ? parts[1] : tp
    end
    nil
  end

  # Request handler: routing plus one JSON log line per request on `log`.
  class App
    include HTTP::Handler

    getter inflight = Atomic(Int32).new(0)
    # Greeting requests served so far, for FAIL_EVERY.
    @served = Atomic(Int64).new(0)

    def initialize(@config : Config, @log : IO = STDOUT)
      @log_lock = Mutex.new
    end

    def call(context : HTTP::Server::Context) : Nil
      @inflight.add(1)
      started = Time.monotonic
      begin
        route(context)
      rescue ex
        STDERR.puts "#{ex.class}: #{ex.message}"
        json(context, 500, {"error" => "internal error"})
      ensure
        log_request(context, Time.monotonic - started)
        @inflight.sub(1)
      end
    end

    def greeting : Hash(String, String)
      canary = @config.version != "1"
      {
        "service" => @config.service,
        "version" => @config.version,
        "message" => canary ? "Hello from the Crystal backend - Canary v#{@config.version}" : "Hello from the Crystal backend",
        "pod"     => @config.pod,
        "zone"    => @config.zone,
      }
    end

    private def route(context) : Nil
      path = context.request.path
      unless {"/", "/crystal", "/health"}.includes?(path)
        return json(context, 404, {"error" => "not found", "path" => path})
      end
      method = context.request.method
      unless method == "GET" || method == "HEAD"
        context.response.headers["Allow"] = "GET, HEAD"
        return json(context, 405, {"error" => "method not allowed"})
      end
      return json(context, 200, {"status" => "ok"}) if path == "/health"
      served = @served.add(1) + 1
      if @config.fail_every > 0 && served % @config.fail_every == 0
        return json(context, 503, {"error" => "injected failure", "fail_every" => @config.fail_every})
      end
      sleep @config.response_delay if @config.response_delay > Time::Span.zero
      json(context, 200, greeting)
    end

    private def json(context, status : Int32, body) : Nil
      payload = body.to_json
      response = context.response
      response.status_code = status
      response.content_type = "application/json; charset=utf-8"
      response.content_length = payload.bytesize
      response.print(payload) unless context.request.method == "HEAD"
    end

    private def log_request(context, elapsed : Time::Span) : Nil
      headers = context.request.headers
      line = {
        "time"            => Time.utc.to_rfc3339(fraction_digits: 3),
        "service"         => @config.service,
        "method"          => context.request.method,
        "path"            => context.request.path,
        "status"          => context.response.status_code,
        "duration_ms"     => (elapsed.total_milliseconds * 1000).round / 1000,
        "trace_id"        => CrystalApp.trace_id(headers),
        "x_amzn_trace_id" => headers["X-Amzn-Trace-Id"]?,
        "traceparent"     => headers["traceparent"]?,
      }.to_json
      @log_lock.synchronize do
        @log.puts line
        @log.flush
      end
    end
  end

  # The HEALTH_PORT handler: /health and nothing else, so the port that
  # bypasses the mesh's mTLS never exposes the application. No request log:
  # it only sees kubelet probes.
  class HealthApp
    include HTTP::Handler

    getter inflight = Atomic(Int32).new(0)

    def call(context : HTTP::Server::Context) : Nil
      @inflight.add(1)
      begin
        request = context.request
        response = context.response
        status, body = if request.path != "/health"
                         {404, {"error" => "not found", "path" => request.path}.to_json}
                       elsif request.method != "GET" && request.method != "HEAD"
                         response.headers["Allow"] = "GET, HEAD"
                         {405, {"error" => "method not allowed"}.to_json}
                       else
                         {200, {"status" => "ok"}.to_json}
                       end
        response.status_code = status
        response.content_type = "application/json; charset=utf-8"
        response.content_length = body.bytesize
        response.print(body) unless request.method == "HEAD"
      ensure
        @inflight.sub(1)
      end
    end
  end

  # HTTP server (plus the optional health listener) and graceful draining.
  class Service
    getter app : App
    getter health_app : HealthApp

    def initialize(config : Config, log : IO = STDOUT)
      @app = App.new(config, log)
      @server = HTTP::Server.new(@app)
      @health_app = HealthApp.new
      @health_server = nil.as(HTTP::Server?)
    end

    def bind(host : String, port : Int32) : Socket::IPAddress
      @server.bind_tcp(host, port)
    end

    # The HEALTH_PORT listener: /health only (see HealthApp).
    def bind_health(host : String, port : Int32) : Socket::IPAddress
      server = @health_server ||= HTTP::Server.new(@health_app)
      server.bind_tcp(host, port)
    end

    # Blocks until the listening sockets (both listeners) are closed.
    def listen : Nil
      if health = @health_server
        done = Channel(Nil).new
        spawn do
          health.listen
        ensure
          done.send(nil)
        end
        @server.listen
        done.receive
      else
        @server.listen
      end
    end

    # Stops accepting on both listeners, then waits for in-flight requests.
    # Returns false when the timeout ran out first (the caller exits anyway:
    # the drain is bounded).
    def drain(timeout : Time::Span = DRAIN_TIMEOUT) : Bool
      @server.close unless @server.closed?
      @health_server.try { |health| health.close unless health.closed? }
      deadline = Time.monotonic + timeout
      # A connection accepted just before close may not have reached the
      # handler yet; give it a moment to be counted.
      sleep 20.milliseconds
      while @app.inflight.get > 0 || @health_app.inflight.get > 0
        return false if Time.monotonic >= deadline
        sleep 10.milliseconds
      end
      true
    end
  end

  # For a container HEALTHCHECK in an image without curl: exit status 0 when
  # /health answers 200 on the local port (HEALTH_PORT when set, else PORT).
  def self.healthcheck(port : Int32) : Int32
    client = HTTP::Client.new("127.0.0.1", port)
    client.connect_timeout = 2.seconds
    client.read_timeout = 2.seconds
    client.get("/health").status_code == 200 ? 0 : 1
  rescue
    1
  end
end
