# frozen_string_literal: true

# Ruby frontend of the App Mesh workshop: asks the Node.js and Crystal
# backends concurrently and shows their answers, which service answered each
# backend lately next to the configured canary weights, and its own counters.
# A Rack app served by Puma (lib/frontend/listeners.rb; capacity: README.md).
#
# Environment:
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
#   NODEJS_URL, CRYSTAL_URL  the backends (default: their mesh names)
#   BACKEND_TIMEOUT_MS=2000  each backend call's budget, in total
#   TALLY_WINDOW=100     how many recent answers per backend the observed split counts
#   MESH_WEIGHTS_DIR=/etc/mesh/weights  the configured canary weights: one file per virtual
#                        service, `<virtual service>.json` = {"<target service>": weight, ...};
#                        files may be missing; re-read when they change (a projected volume of
#                        ConfigMaps; lib/frontend/weights_dir.rb)
#   POD_NAME, AVAILABILITY_ZONE  shown on the page (the downward API sets them)
#   http_proxy/no_proxy  honoured for backend calls (see Frontend.proxy_for)
require 'cgi/escape' # just the escaping: the rest of cgi leaves the stdlib in Ruby 3.5
require 'json'
require 'net/http'
require 'socket'
require 'uri'
require 'rack'

module Frontend
  DEFAULT_NODEJS_URL = 'http://nodejs.appmeshworkshop.hosted.local:3000'
  DEFAULT_CRYSTAL_URL = 'http://crystal.appmeshworkshop.hosted.local:3000'
  DEFAULT_WEIGHTS_DIR = '/etc/mesh/weights'
  # Headers copied from the incoming request onto the backend calls so that
  # X-Ray / W3C traces join up across the mesh (Rack env key => header name).
  TRACE_HEADERS = { 'HTTP_X_AMZN_TRACE_ID' => 'X-Amzn-Trace-Id', 'HTTP_TRACEPARENT' => 'traceparent',
                    'HTTP_TRACESTATE' => 'tracestate' }.freeze
  REFRESH_RANGE = (1..300).freeze
  EXIT_CONFIG_ERROR = 2

  # A setting in the environment the service refuses to start with.
  class ConfigError < StandardError; end

  # health_port: nil means no health listener.
  Config = Struct.new(:port, :host, :nodejs_url, :crystal_url, :timeout_ms, :window, :pod, :zone,
                      :health_port, :weights_dir, keyword_init: true) do
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
        zone: presence(env['AVAILABILITY_ZONE']) || 'unknown',
        weights_dir: presence(env['MESH_WEIGHTS_DIR']) || DEFAULT_WEIGHTS_DIR
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

  def self.monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # Which service (and version) answered a backend, over its last `window`
  # successful answers. Thread-safe.
  class Tally
    MAX_KEY = 32

    attr_reader :window

    def initialize(window)
      @window = window
      @entries = []
      @lock = Mutex.new
    end

    # service/version: from the backend's JSON answer; either may be nil.
    def record(service, version)
      entry = [service&.to_s&.[](0, MAX_KEY), version&.to_s&.[](0, MAX_KEY)]
      @lock.synchronize do
        @entries << entry
        @entries.shift while @entries.size > @window
      end
    end

    # => { samples:, services: {service => count}, versions: {version => count} } (sorted keys)
    def snapshot
      entries = @lock.synchronize { @entries.dup }
      {
        samples: entries.size,
        services: entries.map(&:first).compact.tally.sort.to_h,
        versions: entries.map(&:last).compact.tally.sort.to_h
      }
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
      started = Frontend.monotonic
      result = begin
        fetch
      rescue Net::OpenTimeout, Net::ReadTimeout, Net::WriteTimeout
        { ok: false, error: "timeout after #{(@timeout_s * 1000).round} ms" }
      rescue StandardError => e
        { ok: false, error: "#{e.class}: #{e.message}" }
      end
      result.merge(elapsed_ms: ((Frontend.monotonic - started) * 1000).round(1))
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
  end
end

require_relative 'frontend/json_log'
require_relative 'frontend/server_stats'
require_relative 'frontend/weights_dir'
require_relative 'frontend/page'
require_relative 'frontend/app'
