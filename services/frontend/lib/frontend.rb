# frozen_string_literal: true

# Ruby frontend of the App Mesh workshop: asks the Node.js and Crystal
# backends concurrently and shows their answers, plus a tally of which
# Node.js version answered lately (so a canary split is visible).
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
require 'cgi/escape' # just the escaping: the rest of cgi leaves the stdlib in Ruby 3.5
require 'json'
require 'net/http'
require 'socket'
require 'uri'

module Frontend
  DEFAULT_NODEJS_URL = 'http://nodejs.appmeshworkshop.hosted.local:3000'
  DEFAULT_CRYSTAL_URL = 'http://crystal.appmeshworkshop.hosted.local:3000'
  # Headers copied from the incoming request onto the backend calls so that
  # X-Ray / W3C traces join up across the mesh.
  TRACE_HEADERS = { 'x-amzn-trace-id' => 'X-Amzn-Trace-Id', 'traceparent' => 'traceparent',
                    'tracestate' => 'tracestate' }.freeze
  REFRESH_RANGE = (1..300).freeze
  EXIT_CONFIG_ERROR = 2

  # A setting in the environment the service refuses to start with.
  class ConfigError < StandardError; end

  # health_port: nil means no health listener.
  Config = Struct.new(:port, :host, :nodejs_url, :crystal_url, :timeout_ms, :window, :pod, :zone,
                      :health_port, keyword_init: true) do
    # Raises ConfigError when HEALTH_PORT is not a port or equals PORT.
    def self.from_env(env = ENV)
      port = int(env['PORT'], 3000)
      new(
        port: port,
        health_port: health_port(env['HEALTH_PORT'], port),
        host: presence(env['BIND_ADDRESS']) || '0.0.0.0',
        nodejs_url: presence(env['NODEJS_URL']) || DEFAULT_NODEJS_URL,
        crystal_url: presence(env['CRYSTAL_URL']) || DEFAULT_CRYSTAL_URL,
        timeout_ms: int(env['BACKEND_TIMEOUT_MS'], 2000).clamp(1, 60_000),
        window: int(env['TALLY_WINDOW'], 100).clamp(1, 100_000),
        pod: presence(env['POD_NAME']) || Socket.gethostname,
        zone: presence(env['AVAILABILITY_ZONE']) || 'unknown'
      )
    end

    def self.int(value, default)
      value.to_s.match?(/\A\d+\z/) ? value.to_i : default
    end

    def self.presence(value)
      value.nil? || value.empty? ? nil : value
    end

    def self.health_port(value, port)
      raw = value.to_s.strip
      return nil if raw.empty?

      health_port = raw.match?(/\A\d+\z/) ? raw.to_i : nil
      unless health_port&.between?(1, 65_535)
        raise ConfigError, "HEALTH_PORT must be a TCP port (1-65535), got #{value.inspect}"
      end
      raise ConfigError, "HEALTH_PORT (#{health_port}) must differ from PORT (#{port})" if health_port == port

      health_port
    end
  end

  # The HEALTH_PORT handler: /health and nothing else, so the port that
  # bypasses the mesh's mTLS never exposes the application.
  class HealthApp
    def call(request)
      return App.json(404, error: 'not found', path: request.path) unless request.path == '/health'

      App.health(request)
    end
  end

  # The HTTP proxy for a backend URL from http_proxy/no_proxy, decided without a DNS lookup.
  # Ruby's own discovery (URI#find_proxy) resolves the target host first, and a mesh name that
  # only Envoy knows then stalls every call on the resolver. Unset in the cluster (Envoy
  # intercepts with iptables); set by the local mesh, where Envoy is the proxy.
  def self.proxy_for(uri, env = ENV)
    proxy = Config.presence(env['http_proxy']) || Config.presence(env['HTTP_PROXY'])
    return nil unless proxy

    exempt = (env['no_proxy'] || env['NO_PROXY']).to_s.split(',').map { |entry| entry.strip.delete_prefix('.') }
    return nil if exempt.any? { |entry| entry == '*' || uri.host == entry || uri.host.end_with?(".#{entry}") && !entry.empty? }

    URI(proxy)
  end

  # Which Node.js version answered the last `window` requests. Thread-safe.
  class Tally
    MAX_KEY = 32

    attr_reader :window

    def initialize(window)
      @window = window
      @entries = []
      @lock = Mutex.new
    end

    def record(version)
      @lock.synchronize do
        @entries << version.to_s[0, MAX_KEY]
        @entries.shift while @entries.size > @window
      end
    end

    # => [counts_hash, number_of_samples]
    def snapshot
      @lock.synchronize { [@entries.tally.sort.to_h, @entries.size] }
    end
  end

  # One GET against a backend, bounded by `timeout_s` in total.
  class BackendCall
    def initialize(url, timeout_s, headers)
      @uri = URI.parse(url)
      @timeout_s = timeout_s
      @headers = headers
    end

    def run
      started = monotonic
      result = begin
        fetch
      rescue Net::OpenTimeout, Net::ReadTimeout, Net::WriteTimeout
        { ok: false, error: "timeout after #{(@timeout_s * 1000).round} ms" }
      rescue StandardError => e
        { ok: false, error: "#{e.class}: #{e.message}" }
      end
      result.merge(elapsed_ms: ((monotonic - started) * 1000).round(1))
    end

    private

    def fetch
      raise ArgumentError, "unsupported URL #{@uri}" unless @uri.is_a?(URI::HTTP) && @uri.host

      proxy = Frontend.proxy_for(@uri)
      # An explicit proxy (or nil): Net::HTTP must not look the proxy up again from ENV.
      http = Net::HTTP.new(@uri.host, @uri.port, proxy&.host, proxy&.port)
      http.use_ssl = @uri.scheme == 'https'
      http.open_timeout = http.read_timeout = http.write_timeout = @timeout_s
      request = Net::HTTP::Get.new(@uri.request_uri, { 'Accept' => 'application/json' }.merge(@headers))
      response = http.request(request)
      status = response.code.to_i
      body = parse_object(response.body)
      if status != 200
        { ok: false, status: status, error: "HTTP #{status}", body: body }.compact
      elsif body.nil?
        { ok: false, status: status, error: 'answer is not a JSON object' }
      else
        { ok: true, status: status, body: body }
      end
    end

    def parse_object(text)
      value = JSON.parse(text.to_s)
      value.is_a?(Hash) ? value : nil
    rescue JSON::ParserError
      nil
    end

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end
  end

  class App
    BACKENDS = %w[nodejs crystal].freeze

    attr_reader :config, :tally

    def initialize(config)
      @config = config
      @tally = Tally.new(config.window)
    end

    def self.json(status, data)
      [status, { 'Content-Type' => 'application/json; charset=utf-8' }, JSON.generate(data)]
    end

    def self.method_not_allowed
      [405, { 'Content-Type' => 'application/json', 'Allow' => 'GET, HEAD' },
       JSON.generate(error: 'method not allowed')]
    end

    # GET/HEAD /health, on either listener.
    def self.health(request)
      return method_not_allowed unless %w[GET HEAD].include?(request.method)

      json(200, status: 'ok')
    end

    # MiniHTTP handler: request -> [status, headers, body]
    def call(request)
      return json(404, error: 'not found', path: request.path) unless %w[/ /json /health].include?(request.path)
      return App.health(request) if request.path == '/health'
      return App.method_not_allowed unless %w[GET HEAD].include?(request.method)

      data = gather(request)
      if request.path == '/json'
        json(200, data)
      else
        [200, { 'Content-Type' => 'text/html; charset=utf-8', 'Cache-Control' => 'no-store' },
         render_html(data, refresh_seconds(request.query))]
      end
    end

    # Calls both backends at once; each gets the configured timeout, and a
    # call still running at its deadline is abandoned and reported.
    def gather(request)
      headers = TRACE_HEADERS.each_with_object({}) do |(key, name), out|
        out[name] = request[key] if request[key]
      end
      timeout_s = @config.timeout_ms / 1000.0
      urls = { 'nodejs' => @config.nodejs_url, 'crystal' => @config.crystal_url }
      threads = urls.transform_values do |url|
        Thread.new { BackendCall.new(url, timeout_s, headers).run }
      end
      # Net::HTTP's timeouts are per phase; this deadline bounds the total.
      deadline = monotonic + timeout_s + 0.05
      backends = threads.to_h do |name, thread|
        remaining = [deadline - monotonic, 0].max
        if thread.join(remaining)
          [name, thread.value]
        else
          thread.kill
          [name, { ok: false, error: "timeout after #{@config.timeout_ms} ms",
                   elapsed_ms: @config.timeout_ms.to_f }]
        end
      end
      node = backends['nodejs']
      @tally.record(node[:body]['version']) if node[:ok] && node[:body].key?('version')
      counts, samples = @tally.snapshot
      {
        backends: backends,
        nodejs_versions: counts,
        nodejs_versions_percent: counts.transform_values { |n| (100.0 * n / samples).round(1) },
        samples: samples,
        window: @tally.window,
        timeout_ms: @config.timeout_ms,
        frontend: { pod: @config.pod, zone: @config.zone }
      }
    end

    def refresh_seconds(query)
      value = URI.decode_www_form(query.to_s).assoc('refresh')&.last
      return nil unless value&.match?(/\A-?\d+\z/)

      value.to_i.clamp(REFRESH_RANGE.min, REFRESH_RANGE.max)
    rescue ArgumentError
      nil
    end

    private

    def json(status, data)
      App.json(status, data)
    end

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def h(value)
      CGI.escapeHTML(value.to_s)
    end

    def render_html(data, refresh)
      <<~HTML
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        #{refresh ? %(<meta http-equiv="refresh" content="#{refresh}">) : ''}
        <title>App Mesh workshop</title>
        <style>
        body { font-family: sans-serif; margin: 2em; color: #222; }
        section { border: 1px solid #ccc; border-radius: 6px; padding: 0 1em 1em; margin-bottom: 1em; }
        .ok { color: #1a7f37; } .down { color: #cf222e; }
        table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
        </style>
        </head>
        <body>
        <h1>App Mesh workshop</h1>
        <p>Frontend pod #{h(data[:frontend][:pod])} in zone #{h(data[:frontend][:zone])};
        backend timeout #{h(data[:timeout_ms])} ms#{refresh ? "; refreshing every #{refresh} s" : ''}.</p>
        #{data[:backends].map { |name, result| render_backend(name, result) }.join("\n")}
        #{render_tally(data)}
        </body>
        </html>
      HTML
    end

    def render_backend(name, result)
      if result[:ok]
        body = result[:body]
        rows = %w[service version message pod zone].map do |key|
          "<tr><th>#{h(key)}</th><td>#{h(body[key])}</td></tr>"
        end
        <<~HTML
          <section id="#{h(name)}"><h2>#{h(name)} <span class="ok">ok</span></h2>
          <table>#{rows.join}<tr><th>elapsed</th><td>#{h(result[:elapsed_ms])} ms</td></tr></table></section>
        HTML
      else
        <<~HTML
          <section id="#{h(name)}"><h2>#{h(name)} <span class="down">unavailable</span></h2>
          <p>Reason: #{h(result[:error])} (after #{h(result[:elapsed_ms])} ms)</p></section>
        HTML
      end
    end

    def render_tally(data)
      rows = data[:nodejs_versions].map do |version, count|
        "<tr><td>#{h(version)}</td><td>#{count}</td><td>#{data[:nodejs_versions_percent][version]}%</td></tr>"
      end
      <<~HTML
        <section id="tally"><h2>Node.js versions, last #{data[:samples]} of #{data[:window]} requests</h2>
        <table><tr><th>version</th><th>count</th><th>share</th></tr>#{rows.join}</table></section>
      HTML
    end
  end
end
