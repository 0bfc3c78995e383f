# frozen_string_literal: true

require_relative 'test_helper'
require 'open3'
require 'rbconfig'

# HEALTH_PORT: a second listener that answers /health and nothing else.
class HealthPortTest < Minitest::Test
  include ServerHelpers

  SERVER_RB = File.expand_path('../server.rb', __dir__)

  def free_port
    probe = TCPServer.new('127.0.0.1', 0)
    probe.addr[1]
  ensure
    probe&.close
  end

  def test_config_reads_and_validates_health_port
    assert_nil Frontend::Config.from_env({}).health_port
    assert_nil Frontend::Config.from_env('HEALTH_PORT' => '').health_port
    assert_equal 3001, Frontend::Config.from_env('HEALTH_PORT' => '3001').health_port
    error = assert_raises(Frontend::ConfigError) { Frontend::Config.from_env('HEALTH_PORT' => '3000') }
    assert_equal 'HEALTH_PORT (3000) must differ from PORT (3000)', error.message
    assert_raises(Frontend::ConfigError) { Frontend::Config.from_env('PORT' => '8080', 'HEALTH_PORT' => '8080') }
    %w[abc 0 70000 30x].each do |bad|
      assert_raises(Frontend::ConfigError, bad) { Frontend::Config.from_env('HEALTH_PORT' => bad) }
    end
  end

  def test_health_listener_serves_health_only
    port = free_port
    health_port = free_port
    health_port = free_port while health_port == port
    log = StringIO.new
    config = Frontend::Config.from_env('PORT' => port.to_s, 'HEALTH_PORT' => health_port.to_s,
                                       'BIND_ADDRESS' => '127.0.0.1', 'NODEJS_URL' => dead_url, 'CRYSTAL_URL' => dead_url)
    service = Frontend::Service.new(config, log: Frontend::JsonLog.new(log)).start
    assert_equal health_port, service.health_port
    url = "http://127.0.0.1:#{health_port}"
    health = get("#{url}/health")
    assert_equal '200', health.code
    assert_equal({ 'status' => 'ok' }, JSON.parse(health.body))
    uri = URI(url)
    Net::HTTP.start(uri.host, uri.port, nil) do |http|
      assert_equal '200', http.head('/health').code
      assert_equal '405', http.post('/health', '').code
    end
    %w[/ /json /json?x=1 /nope /health/x].each do |path|
      res = get("#{url}#{path}")
      assert_equal '404', res.code, path
      assert_equal 'not found', JSON.parse(res.body)['error']
    end
    assert_empty log.string, 'probe requests are not logged'
    assert_equal 0, service.stats.counts[:requests], 'nor counted'
  ensure
    service&.stop
    service&.wait(2)
  end

  # The health listener has its own threads: probes are answered while every application
  # thread is busy.
  def test_health_answers_while_the_app_is_saturated
    port = free_port
    health_port = free_port
    health_port = free_port while health_port == port
    slow = ServerHelpers::StubBackend.new(delay: 0.6)
    config = Frontend::Config.from_env('PORT' => port.to_s, 'HEALTH_PORT' => health_port.to_s, 'BIND_ADDRESS' => '127.0.0.1',
                                       'NODEJS_URL' => slow.url, 'CRYSTAL_URL' => slow.url)
    service = Frontend::Service.new(config, log: Frontend::JsonLog.new(StringIO.new), threads: 1, min_threads: 1).start
    busy = 3.times.map { Thread.new { get("http://127.0.0.1:#{port}/json") } }
    sleep 0.2
    res, elapsed = timed { get("http://127.0.0.1:#{health_port}/health") }
    assert_equal '200', res.code
    assert_operator elapsed, :<, 0.5
    assert_equal ['200'] * 3, busy.map { |t| t.value.code }
  ensure
    service&.stop
    service&.wait(5)
    slow&.stop
  end

  def test_real_process_serves_health_port_and_stops_on_sigterm
    port = free_port
    health_port = free_port
    health_port = free_port while health_port == port
    env = { 'PORT' => port.to_s, 'HEALTH_PORT' => health_port.to_s, 'BIND_ADDRESS' => '127.0.0.1',
            'NODEJS_URL' => dead_url, 'CRYSTAL_URL' => dead_url }
    Open3.popen3(env, RbConfig.ruby, SERVER_RB) do |_stdin, stdout, stderr, wait|
      lines = []
      lines << JSON.parse(stdout.gets) until lines.count { |l| l['event'] == 'listening' } == 2
      assert(lines.any? { |l| l['listener'] == 'health' && l['port'] == health_port })
      assert_equal '200', get("http://127.0.0.1:#{health_port}/health").code
      assert_equal '404', get("http://127.0.0.1:#{health_port}/").code
      assert_equal '404', get("http://127.0.0.1:#{health_port}/json").code
      assert_equal '200', get("http://127.0.0.1:#{port}/json").code
      Process.kill('TERM', wait.pid)
      assert_equal 0, wait.value.exitstatus, stderr.read
      assert_raises(Errno::ECONNREFUSED) { get("http://127.0.0.1:#{health_port}/health") }
      rest = stdout.read.lines.map { |l| JSON.parse(l) }
      assert(rest.none? { |l| l['path'] == '/health' }, 'probe requests are not logged')
      assert(rest.any? { |l| l['path'] == '/json' }, 'application requests are logged')
    ensure
      Process.kill('KILL', wait.pid) if wait.alive?
    end
  end

  def test_real_process_refuses_health_port_equal_to_port
    port = free_port.to_s
    out, err, status = Open3.capture3({ 'PORT' => port, 'HEALTH_PORT' => port, 'BIND_ADDRESS' => '127.0.0.1' },
                                      RbConfig.ruby, SERVER_RB)
    refute status.success?
    assert_equal Frontend::EXIT_CONFIG_ERROR, status.exitstatus
    assert_empty out, 'nothing listened'
    line = JSON.parse(err.lines.first)
    assert_equal 'config_error', line['event']
    assert_match(/HEALTH_PORT \(\d+\) must differ from PORT/, line['error'])
  end
end
