# frozen_string_literal: true

require 'minitest/autorun'
require 'net/http'
require 'json'
require 'stringio'
require 'tmpdir'
require_relative '../lib/frontend'
require_relative '../lib/frontend/listeners'

# Helpers: the Rack app called directly, and real Puma servers on ephemeral loopback ports.
module ServerHelpers
  # A stub backend (Puma, in-process): answers `/` with `answer.call(headers)` after `delay`
  # s, recording each request's headers (lower-case names).
  class StubBackend
    attr_reader :requests, :url

    def initialize(delay: 0, &answer)
      @requests = Queue.new
      @answer = answer || ->(_req) { { service: 'stub', version: '1', message: 'hi', pod: 'p', zone: 'z' } }
      @delay = delay
      app = lambda do |env|
        headers = env.select { |key, _| key.start_with?('HTTP_') }
                     .to_h { |key, value| [key.delete_prefix('HTTP_').downcase.tr('_', '-'), value] }
        @requests << headers
        next [404, {}, ['{"error":"not found"}']] unless env['PATH_INFO'] == '/'

        sleep @delay if @delay.positive?
        [200, { 'Content-Type' => 'application/json' }, [JSON.generate(@answer.call(headers))]]
      end
      @server = Puma::Server.new(app, Puma::Events.null, min_threads: 0, max_threads: 16)
      @server.add_tcp_listener('127.0.0.1', 0)
      @server.run
      @url = "http://127.0.0.1:#{@server.connected_ports.first}"
    end

    def stop
      @server.stop(true)
    end
  end

  # The whole frontend (Frontend::Service: Puma, the request log, the counters) in-process;
  # `log` holds its JSON log lines.
  class FrontendServer
    attr_reader :url, :service, :log

    def initialize(env, **options)
      @log = StringIO.new
      config = Frontend::Config.from_env({ 'PORT' => '0', 'BIND_ADDRESS' => '127.0.0.1',
                                           'MESH_WEIGHTS_DIR' => '/nonexistent/weights' }.merge(env))
      @service = Frontend::Service.new(config, log: Frontend::JsonLog.new(@log), **options).start
      @url = "http://127.0.0.1:#{@service.port}"
    end

    def app
      @service.app
    end

    # The log line is written just after the answer is sent: wait for it.
    def log_lines(at_least: 0, timeout: 2)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      loop do
        lines = @log.string.lines.map { |line| JSON.parse(line) }
        return lines if lines.size >= at_least || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        sleep 0.01
      end
    end

    def stop
      @service.stop
      @service.wait(5)
    end
  end

  # A loopback URL where nothing listens.
  def dead_url
    probe = TCPServer.new('127.0.0.1', 0)
    port = probe.addr[1]
    probe.close
    "http://127.0.0.1:#{port}"
  end

  def get(url, headers = {})
    uri = URI(url)
    Net::HTTP.start(uri.host, uri.port, nil, read_timeout: 10) do |http|
      http.request(Net::HTTP::Get.new(uri.request_uri, headers))
    end
  end

  # Raw bytes over one connection: the whole answer, read until the server closes.
  def raw(port, request)
    socket = TCPSocket.new('127.0.0.1', port)
    socket.write(request)
    socket.read
  ensure
    socket&.close
  end

  def timed
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    result = yield
    [result, Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0]
  end

  # A Frontend::Config for the app called directly (no listener).
  def config(env = {})
    Frontend::Config.from_env({ 'MESH_WEIGHTS_DIR' => '/nonexistent/weights' }.merge(env))
  end
end
