# frozen_string_literal: true

# Container HEALTHCHECK: exit 0 when /health on the local port answers 200.
require 'net/http'

begin
  http = Net::HTTP.new('127.0.0.1', Integer(ENV.fetch('PORT', '3000')), nil)
  http.open_timeout = http.read_timeout = 2
  exit(http.get('/health').code == '200' ? 0 : 1)
rescue StandardError
  exit 1
end
