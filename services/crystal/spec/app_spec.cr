require "spec"
require "../src/app"

# Starts a Service on an ephemeral loopback port; yields (client, service, log).
def with_service(env : Hash(String, String) = {} of String => String, &)
  log = IO::Memory.new
  service = CrystalApp::Service.new(CrystalApp::Config.from_env(env), log)
  address = service.bind("127.0.0.1", 0)
  spawn { service.listen }
  Fiber.yield
  client = HTTP::Client.new("127.0.0.1", address.port)
  begin
    yield client, service, log
  ensure
    client.close
    service.drain(1.second)
  end
end

# src/main.cr built once (unoptimised) for the tests of the real process.
MAIN_BINARY = begin
  dir = File.tempname("crystal-app-spec")
  Dir.mkdir_p(dir)
  binary = File.join(dir, "crystal-app")
  output = IO::Memory.new
  status = Process.run("crystal", ["build", "--no-color", "src/main.cr", "-o", binary],
    chdir: File.join(__DIR__, ".."), output: output, error: output)
  raise "crystal build failed: #{output}" unless status.success?
  Spec.after_suite { File.delete?(binary); Dir.delete(dir) if Dir.exists?(dir) }
  binary
end

def free_port : Int32
  server = TCPServer.new("127.0.0.1", 0)
  port = server.local_address.port
  server.close
  port
end

def log_lines(log : IO::Memory) : Array(JSON::Any)
  log.to_s.lines.map { |line| JSON.parse(line) }
end

describe CrystalApp do
  it "answers / and /crystal with service, version, pod and zone from env" do
    env = {"POD_NAME" => "pod-c", "AVAILABILITY_ZONE" => "us-west-2b"}
    with_service(env) do |client|
      {"/", "/crystal"}.each do |path|
        response = client.get(path)
        response.status_code.should eq 200
        response.headers["Content-Type"].should contain "application/json"
        body = JSON.parse(response.body)
        body["service"].should eq "crystal"
        body["version"].should eq "1"
        body["message"].as_s.should contain "Crystal"
        body["message"].as_s.should_not contain "Canary"
        body["pod"].should eq "pod-c"
        body["zone"].should eq "us-west-2b"
      end
    end
  end

  it "falls back to the hostname and an unknown zone" do
    with_service do |client|
      body = JSON.parse(client.get("/").body)
      body["pod"].should eq System.hostname
      body["zone"].should eq "unknown"
    end
  end

  it "marks a non-1 APP_VERSION as canary and honours SERVICE_NAME" do
    with_service({"APP_VERSION" => "2", "SERVICE_NAME" => "crystal-canary"}) do |client|
      body = JSON.parse(client.get("/").body)
      body["version"].should eq "2"
      body["service"].should eq "crystal-canary"
      body["message"].as_s.should contain "Canary"
    end
  end

  it "serves /health and a JSON 404 for unknown paths" do
    with_service do |client|
      health = client.get("/health")
      health.status_code.should eq 200
      JSON.parse(health.body).should eq JSON.parse(%({"status":"ok"}))
      missing = client.get("/nope")
      missing.status_code.should eq 404
      JSON.parse(missing.body)["error"].should eq "not found"
      client.post("/").status_code.should eq 405
      client.post("/health").status_code.should eq 405
    end
  end

  it "logs one JSON line per request with the trace ids" do
    with_service do |client, _, log|
      headers = HTTP::Headers{
        "X-Amzn-Trace-Id" => "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        "traceparent"     => "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      }
      client.get("/crystal?x=1", headers: headers)
      client.get("/missing")
      lines = log_lines(log)
      lines.size.should eq 2
      first = lines[0]
      first["method"].should eq "GET"
      first["path"].should eq "/crystal"
      first["status"].should eq 200
      first["duration_ms"].as_f.should be >= 0.0
      Time::Format::RFC_3339.parse(first["time"].as_s)
      first["trace_id"].should eq "1-5759e988-bd862e3fe1be46a994272793"
      first["traceparent"].should eq "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
      lines[1]["status"].should eq 404
      lines[1]["trace_id"].raw.should be_nil
    end
  end

  it "delays / by RESPONSE_DELAY_MS but not /health" do
    with_service({"RESPONSE_DELAY_MS" => "200"}) do |client|
      elapsed = Time.measure { client.get("/health") }
      elapsed.should be < 150.milliseconds
      elapsed = Time.measure { client.get("/").status_code.should eq 200 }
      elapsed.should be >= 190.milliseconds
    end
  end

  it "answers every FAIL_EVERY-th greeting with 503 but never /health" do
    with_service({"FAIL_EVERY" => "2"}) do |client|
      statuses = (1..6).map do |i|
        client.get("/health").status_code.should eq 200
        client.get(i.odd? ? "/" : "/crystal").status_code
      end
      statuses.should eq [200, 503, 200, 503, 200, 503]
    end
    with_service({"FAIL_EVERY" => "1"}) do |client|
      response = client.get("/")
      response.status_code.should eq 503
      JSON.parse(response.body)["error"].should eq "injected failure"
    end
    CrystalApp::Config.from_env({"FAIL_EVERY" => "x"}).fail_every.should eq 0
  end

  it "drains: finishes an in-flight request and stops accepting" do
    log = IO::Memory.new
    service = CrystalApp::Service.new(CrystalApp::Config.from_env({"RESPONSE_DELAY_MS" => "300"}), log)
    port = service.bind("127.0.0.1", 0).port
    spawn { service.listen }
    Fiber.yield
    result = Channel(Int32).new
    spawn { result.send HTTP::Client.get("http://127.0.0.1:#{port}/").status_code }
    sleep 50.milliseconds
    service.drain(5.seconds).should be_true
    result.receive.should eq 200
    expect_raises(Socket::ConnectError) { HTTP::Client.get("http://127.0.0.1:#{port}/health") }
  end

  it "extracts trace ids" do
    CrystalApp.trace_id(HTTP::Headers{"traceparent" => "00-abc-def-01"}).should eq "abc"
    CrystalApp.trace_id(HTTP::Headers{"X-Amzn-Trace-Id" => "Self=1;Root=1-2-3"}).should eq "1-2-3"
    CrystalApp.trace_id(HTTP::Headers.new).should be_nil
  end

  describe "HEALTH_PORT" do
    it "is nil when unset or empty, read when a port, refused when junk or equal to PORT" do
      CrystalApp::Config.from_env({} of String => String).health_port.should be_nil
      CrystalApp::Config.from_env({"HEALTH_PORT" => ""}).health_port.should be_nil
      CrystalApp::Config.from_env({"HEALTH_PORT" => "3001"}).health_port.should eq 3001
      expect_raises(CrystalApp::ConfigError, "HEALTH_PORT (3000) must differ from PORT (3000)") do
        CrystalApp::Config.from_env({"HEALTH_PORT" => "3000"})
      end
      expect_raises(CrystalApp::ConfigError, /must differ from PORT/) do
        CrystalApp::Config.from_env({"PORT" => "8080", "HEALTH_PORT" => "8080"})
      end
      {"abc", "0", "70000", "30x"}.each do |bad|
        expect_raises(CrystalApp::ConfigError) { CrystalApp::Config.from_env({"HEALTH_PORT" => bad}) }
      end
    end

    it "serves /health only on the health listener, never the application" do
      log = IO::Memory.new
      service = CrystalApp::Service.new(CrystalApp::Config.from_env({"HEALTH_PORT" => "3001"}), log)
      port = service.bind("127.0.0.1", 0).port
      health_port = service.bind_health("127.0.0.1", 0).port
      spawn { service.listen }
      Fiber.yield
      health = HTTP::Client.new("127.0.0.1", health_port)
      begin
        response = health.get("/health")
        response.status_code.should eq 200
        JSON.parse(response.body).should eq JSON.parse(%({"status":"ok"}))
        health.head("/health").status_code.should eq 200
        health.post("/health").status_code.should eq 405
        {"/", "/crystal", "/nope", "/crystal?x=1"}.each do |path|
          other = health.get(path)
          other.status_code.should eq 404
          JSON.parse(other.body)["error"].should eq "not found"
        end
        log.to_s.should be_empty # probes are not logged
        HTTP::Client.get("http://127.0.0.1:#{port}/crystal").status_code.should eq 200
        log_lines(log).size.should eq 1
      ensure
        health.close
      end
      service.drain(1.second).should be_true
      expect_raises(Socket::ConnectError) { HTTP::Client.get("http://127.0.0.1:#{health_port}/health") }
      expect_raises(Socket::ConnectError) { HTTP::Client.get("http://127.0.0.1:#{port}/health") }
    end

    it "is refused at startup when equal to PORT" do
      port = free_port
      output = IO::Memory.new
      error = IO::Memory.new
      status = Process.run(MAIN_BINARY, env: {"PORT" => port.to_s, "HEALTH_PORT" => port.to_s, "BIND_ADDRESS" => "127.0.0.1"},
        output: output, error: error)
      status.success?.should be_false
      status.exit_code.should eq CrystalApp::EXIT_CONFIG_ERROR
      output.to_s.should be_empty # nothing listened
      line = JSON.parse(error.to_s.lines.first)
      line["event"].should eq "config_error"
      line["error"].as_s.should contain "must differ from PORT"
    end

    it "runs a second listener in the real process and closes it on SIGTERM" do
      port = free_port
      health_port = free_port
      while health_port == port
        health_port = free_port
      end
      output = IO::Memory.new
      process = Process.new(MAIN_BINARY, env: {"PORT" => port.to_s, "HEALTH_PORT" => health_port.to_s, "BIND_ADDRESS" => "127.0.0.1"},
        output: output, error: Process::Redirect::Inherit)
      begin
        deadline = Time.monotonic + 10.seconds
        until output.to_s.lines.count(&.includes?(%("event":"listening"))) >= 2
          raise "not listening: #{output}" if Time.monotonic > deadline || process.terminated?
          sleep 20.milliseconds
        end
        HTTP::Client.get("http://127.0.0.1:#{health_port}/health").status_code.should eq 200
        HTTP::Client.get("http://127.0.0.1:#{health_port}/").status_code.should eq 404
        HTTP::Client.get("http://127.0.0.1:#{health_port}/crystal").status_code.should eq 404
        HTTP::Client.get("http://127.0.0.1:#{port}/crystal").status_code.should eq 200
        process.signal(Signal::TERM)
        process.wait.exit_code.should eq 0
        expect_raises(Socket::ConnectError) { HTTP::Client.get("http://127.0.0.1:#{health_port}/health") }
        events = output.to_s.lines.map { |line| JSON.parse(line) }
        events.any? { |e| e["listener"]? == "health" && e["port"]? == health_port }.should be_true
        events.none? { |e| e["path"]? == "/health" }.should be_true
      ensure
        process.signal(Signal::KILL) unless process.terminated?
      end
    end
  end
end
