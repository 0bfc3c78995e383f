# frozen_string_literal: true

require 'minitest/autorun'
require 'net/http'
require 'json'
require 'stringio'
require_relative '../lib/frontend'
require_relative '../lib/mini_http'

# Helpers: in-process servers on ephemeral loopback ports.
module ServerHelpers
  # A stub backend: answers `/` with `answer.call(request)` after `delay` s,
  # recording each request's headers.
  class StubBackend
    attr_reader :requests, :url

    def initialize(delay: 0, &answer)
      @requests = Queue.new
      @answer = answer || ->(_req) { { service: 'stub', version: '1', message: 'hi', pod: 'p', zone: 'z' } }
      @delay = delay
      handler = lambda do |req|
        @requests << req
        next [404, {}, '{"error":"not found"}'] unless req.path == '/'

        sleep @delay if @delay.positive?
        [200, { 'Content-Type' => 'application/json' }, JSON.generate(@answer.call(req))]
      end
      @server = MiniHTTP::Server.new(host: '127.0.0.1', port: 0, handler: handler, service: 'stub',
                                     log_io: StringIO.new)
      @thread = Thread.new { @server.serve }
      @url = "http://127.0.0.1:#{@server.port}"
    end

    def stop
      @server.request_stop
      @thread.join(2)
      @server.drain(2)
    end
  end

  # The frontend app served in-process; `log` holds its JSON log lines.
  class FrontendServer
    attr_reader :url, :app, :log, :server

    def initialize(env)
      @log = StringIO.new
      @app = Frontend::App.new(Frontend::Config.from_env(env))
      @server = MiniHTTP::Server.new(host: '127.0.0.1', port: 0, handler: @app, log_io: @log)
      @thread = Thread.new { @server.serve }
      @url = "http://127.0.0.1:#{@server.port}"
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
      @server.request_stop
      @thread.join(2)
      @server.drain(2)
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

  def timed
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    result = yield
    [result, Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0]
  end
end
